package proxy_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// Behind a middlebox that cuts every long transfer (testenv.CutEvery:
// harbor #23600, containerd PR #5921), a fill resumes each cut with a
// ranged GET from the last byte it read, in one stream or in parallel
// parts, and the blob is stored once the whole verifies. Before, the first
// cut failed the fill and the blob could never be cached.
func TestFillResumesCutTransfers(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg       proxy.Config
		layer     int64 // bytes of random data in the layer
		cut       int   // bytes of each answer before the cut (CutEvery); 0: FaultCut, each whole GET cut at half
		minRanged int   // blob GETs the upstream must see at least
	}{
		{"one stream", proxy.Config{FillParts: 1}, 1 << 20, 256 << 10, 5},
		{"parallel parts", proxy.Config{FillParts: 3, FillPartSize: 1 << 20}, 4 << 20, 384 << 10, 12},
		{"connection cut at half", proxy.Config{FillParts: 1}, 1 << 20, 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := testenv.InProcessRegistry(t)
			up := testenv.NewUpstream(t, reg)
			tc.cfg.ManifestTTL = proxy.RevalidateAlways
			m := mirrorFor(t, tc.cfg, proxy.UpstreamConfig{}, up)
			img := testenv.SeedImage(t, reg, "org/app:1", tc.layer, 1)
			d, want := layerOf(t, img, 0)
			if tc.cut > 0 {
				up.CutEvery(tc.cut)
			} else {
				up.SetFault(testenv.FaultCut, "blob")
			}

			resp, err := http.Get(m.URL + "/v2/org/app/blobs/" + d.String())
			if err != nil {
				t.Fatal(err)
			}
			got, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || rerr != nil || !bytes.Equal(got, want) {
				t.Fatalf("got %d with %d bytes (read error %v), want 200 with the whole %d-byte layer", resp.StatusCode, len(got), rerr, len(want))
			}
			waitFills(t, m.Proxy)
			if _, err := m.Store.Stat(t.Context(), "blobs/sha256/"+d.Hex); err != nil {
				t.Errorf("the resumed blob was not stored: %v", err)
			}
			if n := up.Count(http.MethodGet, "blob"); n < tc.minRanged {
				t.Errorf("got %d upstream blob GETs, want at least %d (the cut ones resumed)", n, tc.minRanged)
			}
		})
	}
}
