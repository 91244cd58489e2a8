package proxy

import "testing"

func TestParseByteRange(t *testing.T) {
	for _, tc := range []struct {
		h             string
		size          int64
		want          byteRange
		ok, unsatisfy bool
	}{
		{"bytes=0-", 100, byteRange{0, 100}, true, false}, // containerd 2.1+ on every layer GET
		{"bytes=0-9", 100, byteRange{0, 10}, true, false},
		{"bytes=90-200", 100, byteRange{90, 10}, true, false},
		{"bytes=50-", 100, byteRange{50, 50}, true, false},
		{"bytes=-10", 100, byteRange{90, 10}, true, false},
		{"bytes=-200", 100, byteRange{0, 100}, true, false},
		{"bytes=100-", 100, byteRange{}, true, true},
		{"bytes=-0", 100, byteRange{}, true, true},
		{"bytes=5-4", 100, byteRange{}, false, false},
		{"bytes=0-1,5-6", 100, byteRange{}, false, false},
		{"items=0-1", 100, byteRange{}, false, false},
		{"bytes=a-", 100, byteRange{}, false, false},
		{"bytes=+1-", 100, byteRange{}, false, false},
		{"bytes=0-", -1, byteRange{}, false, false}, // size unknown
	} {
		got, ok, uns := parseByteRange(tc.h, tc.size)
		if got != tc.want || ok != tc.ok || uns != tc.unsatisfy {
			t.Errorf("%q of %d: got %+v ok %v unsatisfiable %v, want %+v %v %v", tc.h, tc.size, got, ok, uns, tc.want, tc.ok, tc.unsatisfy)
		}
	}
}

func FuzzParseByteRange(f *testing.F) {
	for _, s := range []string{"bytes=0-", "bytes=-5", "bytes=3-9", "bytes=0-1,2-3"} {
		f.Add(s, int64(10))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		r, ok, uns := parseByteRange(h, size)
		if ok && !uns && (r.n <= 0 || r.off < 0 || r.off+r.n > size) {
			t.Fatalf("%q of %d: range %+v outside the blob", h, size, r)
		}
	})
}
