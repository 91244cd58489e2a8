package upstream

import (
	"strings"
	"testing"
	"time"
)

var checkedAt = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// TestTableTokenExpiry: a bearer token is reused up to its expiry by the
// upstream's clock, not after.
func TestTableTokenExpiry(t *testing.T) {
	for _, tc := range []struct {
		after time.Duration
		want  bool
	}{{0, true}, {50 * time.Second, true}, {50*time.Second + 1, false}} {
		var c tokenCache
		c.put("scope", "tok", checkedAt.Add(50*time.Second), checkedAt)
		if _, ok := c.get("scope", checkedAt.Add(tc.after)); ok != tc.want {
			t.Errorf("%s after issue (expires at 50s): got reuse %v, want %v", tc.after, ok, tc.want)
		}
	}
}

func TestParseChallenge(t *testing.T) {
	for _, tc := range []struct {
		in     string
		scheme string
		params map[string]string
		ok     bool
	}{
		{`Bearer realm="https://auth.example/token",service="registry.example",scope="repository:library/alpine:pull"`, "bearer",
			map[string]string{"realm": "https://auth.example/token", "service": "registry.example", "scope": "repository:library/alpine:pull"}, true},
		{`Basic realm="Registry Realm"`, "basic", map[string]string{"realm": "Registry Realm"}, true},
		{`bearer realm=https://x/token, service=svc`, "bearer", map[string]string{"realm": "https://x/token", "service": "svc"}, true},
		{`Bearer realm="a\"b,c",scope="x"`, "bearer", map[string]string{"realm": `a"b,c`, "scope": "x"}, true},
		{`Bearer realm="unterminated`, "", nil, false},
		{``, "", nil, false},
		{`=broken`, "", nil, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := parseChallenge(tc.in)
			if ok != tc.ok {
				t.Fatalf("got ok=%v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if got.scheme != tc.scheme {
				t.Errorf("got scheme %q, want %q", got.scheme, tc.scheme)
			}
			for k, v := range tc.params {
				if got.params[k] != v {
					t.Errorf("got %s=%q, want %q", k, got.params[k], v)
				}
			}
		})
	}
}

func FuzzParseChallenge(f *testing.F) {
	f.Add(`Bearer realm="https://auth.example/token",service="s",scope="repository:a:pull"`)
	f.Add(`Basic realm="r"`)
	f.Add(`Bearer realm="a\"b`)
	f.Fuzz(func(t *testing.T, v string) {
		c, ok := parseChallenge(v)
		if ok && (c.scheme == "" || strings.ContainsAny(c.scheme, " \t=,\"")) {
			t.Fatalf("%q: bad scheme %q", v, c.scheme)
		}
	})
}

// TestFillRateAveragesBigFillsOnly: the learnt fill rate ignores fills too
// small to measure the network and averages the others.
func TestFillRateAveragesBigFillsOnly(t *testing.T) {
	var r fillRate
	r.note(MinRatedFill-1, time.Millisecond) // too small to say anything
	if got := r.get(); got != 0 {
		t.Fatalf("after a small fill: got rate %v, want 0 (unmeasured)", got)
	}
	r.note(100<<20, time.Second)
	r.note(300<<20, time.Second)
	if got, want := r.get(), float64(200<<20); got != want {
		t.Errorf("got rate %v B/s, want %v (the average of 100 and 300 MiB/s)", got, want)
	}
}

// TestTableHeadlessExpiry: an upstream learnt headless is revalidated with
// GET only until HeadlessFor has passed, by the client's clock.
func TestTableHeadlessExpiry(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after time.Duration
		want  bool
	}{
		{"headless just before expiry", HeadlessFor - 1, true},
		{"headless at expiry: HEAD is tried again", HeadlessFor, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(Config{URL: "https://reg.example"})
			if err != nil {
				t.Fatal(err)
			}
			now := checkedAt
			c.SetClock(func() time.Time { return now })
			if !c.NoteHeadless() {
				t.Error("first NoteHeadless: got not news, want news")
			}
			now = checkedAt.Add(tc.after)
			if got := c.Facts().Headless; got != tc.want {
				t.Errorf("after %s: got %v, want %v", tc.after, got, tc.want)
			}
		})
	}
}
