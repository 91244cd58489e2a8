package proxy_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// A big blob is filled as parallel ranged GETs when the upstream honours
// Range, as one stream when it answers a ranged GET with the whole body,
// and not at all when a part's bytes are wrong.
func TestParallelRangedFill(t *testing.T) {
	// proxy.MinFillPartSize: a smaller part is refused by Config.Validate.
	const partSize = 1 << 20
	for _, tc := range []struct {
		name        string
		ignoreRange bool // the stand-in drops Range: the registry answers 200, whole
		corrupt     bool // the stand-in flips a byte of the third part
		wantRanged  int  // ranged GETs the upstream sees
		wantStored  bool // the fill succeeds
	}{
		{"upstream honours Range", false, false, 4, true},
		{"upstream ignores Range: one stream", true, false, 1, true},
		{"a part with wrong bytes fails the fill", false, true, 4, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := testenv.InProcessRegistry(t)
			up := testenv.NewUpstream(t, reg)
			m := mirrorFor(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways, FillParts: 3, FillPartSize: partSize}, proxy.UpstreamConfig{}, up)
			// random.Image's layer of 4 MiB is a tarball a little over
			// that: five parts of 1 MiB.
			img := testenv.SeedImage(t, reg, "org/big:1", 4<<20, 1)
			d, body := layerOf(t, img, 0)
			if parts := (len(body) + partSize - 1) / partSize; parts != 5 {
				t.Fatalf("the layer is %d bytes, %d parts; the test wants 5", len(body), parts)
			}
			var ranged atomic.Int32
			up.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method != http.MethodGet || r.Header.Get("Range") == "" || !strings.Contains(r.URL.Path, "/blobs/") {
					return false
				}
				ranged.Add(1)
				switch {
				case tc.ignoreRange:
					r.Header.Del("Range")
				case tc.corrupt && strings.HasPrefix(r.Header.Get("Range"), fmt.Sprintf("bytes=%d-", 2*partSize)):
					corruptPart(t, w, r, reg.String())
					return true
				}
				return false
			})
			resp, err := http.Get(m.URL + "/v2/org/big/blobs/" + d.String())
			if err != nil {
				t.Fatal(err)
			}
			got, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if tc.wantStored && (rerr != nil || !bytes.Equal(got, body)) {
				t.Errorf("got %d bytes (err %v), want the %d-byte layer", len(got), rerr, len(body))
			}
			if !tc.wantStored && resp.StatusCode == http.StatusOK && rerr == nil {
				t.Errorf("got a complete %d-byte body from a failed fill, want an error or a cut", len(got))
			}
			if tc.wantStored {
				waitStored(t, m.Store, d) // the publish follows the last byte
			}
			if s := stored(m, d.Hex); s != tc.wantStored {
				t.Errorf("blob stored: %v, want %v", s, tc.wantStored)
			}
			if n := int(ranged.Load()); n != tc.wantRanged {
				t.Errorf("got %d ranged GETs, want %d", n, tc.wantRanged)
			}
			if n := up.Count(http.MethodGet, "blob"); n != tc.wantRanged+1 {
				t.Errorf("got %d upstream blob GETs, want %d (one plain, then the ranged ones)", n, tc.wantRanged+1)
			}
		})
	}
}

// corruptPart answers a ranged GET with the registry's answer, one byte
// of its body flipped.
func corruptPart(t *testing.T, w http.ResponseWriter, r *http.Request, reg string) {
	req, _ := http.NewRequest(http.MethodGet, reg+r.URL.Path, nil)
	req.Header.Set("Range", r.Header.Get("Range"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if len(b) > 0 {
		b[len(b)/2] ^= 0xff
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(b)
}
