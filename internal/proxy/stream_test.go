package proxy_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// readFirst GETs u and reads its first n body bytes; the caller reads on
// and closes.
func readFirst(t *testing.T, u string, n int) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		t.Fatalf("GET %s: got %d, want 200", u, resp.StatusCode)
	}
	head := make([]byte, n)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		resp.Body.Close()
		t.Fatalf("GET %s: first %d bytes: %v", u, n, err)
	}
	return resp, head
}

// stored reports whether the mirror's store holds the blob.
func stored(m *mirror, d string) bool {
	_, err := m.Store.Stat(context.Background(), "blobs/sha256/"+d)
	return err == nil
}

// A cold blob GET gets its first bytes while the fill is still running
// (the blob is not in the store yet), and the whole verified blob once it
// is published; concurrent GETs join the one upstream GET.
func TestColdBlobStreamsWhileFilling(t *testing.T) {
	for _, clients := range []int{1, 4} {
		t.Run(map[int]string{1: "one client", 4: "four clients join"}[clients], func(t *testing.T) {
			m, reg := newMirror(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{})
			img := testenv.SeedImage(t, reg, "org/app:1", 2<<20, 1)
			d, body := layerOf(t, img, 0)
			m.Up.SetFault(testenv.FaultThrottle, "blob") // about 4 MiB/s: the fill takes ~0.5 s
			u := m.URL + "/v2/org/app/blobs/" + d.String()
			var wg sync.WaitGroup
			for i := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, head := readFirst(t, u, 64<<10)
					defer resp.Body.Close()
					if stored(m, d.Hex) {
						t.Errorf("client %d: the blob was already in the store at its first bytes, want them streamed during the fill", i)
					}
					rest, err := io.ReadAll(resp.Body)
					if err != nil || !bytes.Equal(append(head, rest...), body) {
						t.Errorf("client %d: got %d bytes (err %v), want the %d-byte layer", i, len(head)+len(rest), err, len(body))
					}
					if resp.ContentLength != int64(len(body)) || resp.Header.Get("X-Pullthrough-Cache") != "miss" {
						t.Errorf("client %d: got length %d cache %q, want %d miss", i, resp.ContentLength, resp.Header.Get("X-Pullthrough-Cache"), len(body))
					}
					if !stored(m, d.Hex) {
						t.Errorf("client %d: got the last byte before the blob was published", i)
					}
				}()
			}
			wg.Wait()
			if n := m.Up.Count(http.MethodGet, "blob"); n != 1 {
				t.Errorf("got %d upstream blob GETs for %d clients, want 1", n, clients)
			}
		})
	}
}

// A client that hangs up mid-stream ends its own stream, not the fill.
func TestStreamedFillOutlivesItsClient(t *testing.T) {
	m, reg := newMirror(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{})
	img := testenv.SeedImage(t, reg, "org/app:1", 2<<20, 1)
	d, body := layerOf(t, img, 0)
	m.Up.SetFault(testenv.FaultThrottle, "blob")
	u := m.URL + "/v2/org/app/blobs/" + d.String()
	resp, _ := readFirst(t, u, 64<<10)
	resp.Body.Close()
	for deadline := time.Now().Add(20 * time.Second); !stored(m, d.Hex); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the fill did not finish within 20s of its client leaving")
		}
	}
	hit := do(t, http.MethodGet, u, nil)
	if hit.StatusCode != 200 || hit.Header.Get("X-Pullthrough-Cache") != "hit" || !bytes.Equal(hit.body, body) {
		t.Errorf("after the fill: got %d %q, want a 200 hit with the layer", hit.StatusCode, hit.Header.Get("X-Pullthrough-Cache"))
	}
	if n := m.Up.Count(http.MethodGet, "blob"); n != 1 {
		t.Errorf("got %d upstream blob GETs, want 1", n)
	}
}

// A Range request for a cold blob is not streamed: it waits for the fill
// and gets its 206 from the store (dockerd resumes with Range).
func TestColdRangeRequestFillsThenAnswers206(t *testing.T) {
	m, reg := newMirror(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{})
	img := testenv.SeedImage(t, reg, "org/app:1", 64<<10, 1)
	d, body := layerOf(t, img, 0)
	resp := do(t, http.MethodGet, m.URL+"/v2/org/app/blobs/"+d.String(), http.Header{"Range": {"bytes=100-199"}})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(resp.body, body[100:200]) {
		t.Fatalf("got %d with %d bytes, want 206 with bytes 100-199", resp.StatusCode, len(resp.body))
	}
	if !stored(m, d.Hex) {
		t.Error("the blob is not in the store after the ranged miss")
	}
}

// In Lambda a blob under the uncapped part of a streamed response is
// streamed while it is filled, in the invocation.
func TestLambdaSmallBlobStreamsWhileFilling(t *testing.T) {
	reg := testenv.InProcessRegistry(t)
	up := testenv.NewUpstream(t, reg)
	lm := newLambdaMirror(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{URL: up.URL.String()})
	img := testenv.SeedImage(t, reg, "org/app:1", 2<<20, 1)
	d, body := layerOf(t, img, 0)
	up.SetFault(testenv.FaultThrottle, "blob")
	resp, head := readFirst(t, lm.URL+"/v2/org/app/blobs/"+d.String(), 64<<10)
	defer resp.Body.Close()
	if stored(lm.mirror, d.Hex) {
		t.Error("the blob was in the store at the first bytes, want them streamed during the fill")
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(append(head, rest...), body) {
		t.Errorf("got %d bytes (err %v), want the %d-byte layer", len(head)+len(rest), err, len(body))
	}
	if lm.invocations() != 0 {
		t.Errorf("got %d background fills, want 0 (filled in the request)", lm.invocations())
	}
}
