package proxy_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// A sweep that runs while a fill is still downloading, on both stores:
// the fill's lease is live and its upload unfinished (half the body has
// come from the upstream). The sweep must leave the lease and the upload
// alone, and the fill then publishes the verified blob, which the next GET
// finds in the store without asking the upstream again. The clock is 60
// days ahead, so everything real-time looks older than the retention.
// (TestSweepRacingFillKeepsBlob holds the later window, between the
// publish and the lease release, at the S3 front; the filesystem store has
// no front where that moment can be held.)
func TestSweepDuringFillKeepsIt(t *testing.T) {
	eachStore(t, func(t *testing.T, ts testStore) {
		clock := &testClock{t: time.Now().Add(60 * 24 * time.Hour)}
		h, base, up, reg := mirrorOn(t, ts.st, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, clock)
		t.Cleanup(func() { h.WaitFills(20 * time.Second) })
		img := testenv.SeedImage(t, reg, "org/app:1", 256<<10, 1)
		layers, _ := img.Layers()
		ld, _ := layers[0].Digest()
		rc, err := layers[0].Compressed()
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}

		// A scripted upstream answer: half the blob, then a pause until
		// the sweep is done, then the rest.
		mid, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		up.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
			if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+ld.String()) || r.Header.Get("Range") != "" {
				return false
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Header().Set("Docker-Content-Digest", ld.String())
			w.WriteHeader(http.StatusOK)
			w.Write(body[:len(body)/2])
			w.(http.Flusher).Flush()
			once.Do(func() { close(mid) })
			select {
			case <-release:
			case <-time.After(20 * time.Second):
			}
			w.Write(body[len(body)/2:])
			return true
		})

		type result struct {
			status int
			sum    string
		}
		done := make(chan result, 1)
		go func() {
			resp, err := http.Get(base + "/v2/org/app/blobs/" + ld.String())
			if err != nil {
				done <- result{}
				return
			}
			defer resp.Body.Close()
			sum := sha256.New()
			io.Copy(sum, resp.Body)
			done <- result{resp.StatusCode, "sha256:" + hex.EncodeToString(sum.Sum(nil))}
		}()
		select {
		case <-mid:
		case <-time.After(20 * time.Second):
			t.Fatal("the fill never reached the upstream")
		}
		leases := func() int {
			n := 0
			for _, err := range ts.st.(proxy.Lister).List(context.Background(), "leases/") {
				if err != nil {
					t.Fatal(err)
				}
				n++
			}
			return n
		}
		if n := leases(); n != 1 {
			t.Fatalf("during the fill: got %d leases, want 1", n)
		}
		rep, err := h.Sweep(context.Background(), proxy.SweepOptions{Retention: 30 * 24 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if n := leases(); n != 1 {
			t.Errorf("after the sweep: got %d leases, want the fill's 1 (report %+v)", n, rep)
		}
		close(release)
		res := <-done
		if res.status != http.StatusOK || res.sum != ld.String() {
			t.Fatalf("blob GET during the sweep: got %d with %s, want 200 with %s", res.status, res.sum, ld)
		}
		if !h.WaitFills(20 * time.Second) {
			t.Fatal("the fill did not finish")
		}
		if !present(t, ts.st, blobKeyOf(t, ld)) {
			t.Fatalf("the fill that the sweep ran across published nothing (report %+v)", rep)
		}
		r := do(t, http.MethodGet, base+"/v2/org/app/blobs/"+ld.String(), nil)
		if r.StatusCode != http.StatusOK && r.StatusCode != http.StatusTemporaryRedirect {
			t.Errorf("blob GET after the fill: got %d, want 200 or 307", r.StatusCode)
		}
		if n := up.Count(http.MethodGet, "blob"); n != 1 {
			t.Errorf("upstream blob GETs: got %d, want 1", n)
		}
	})
}
