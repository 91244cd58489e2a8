package proxy_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/store"
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
// (the blob is not in the store yet), and the whole verified blob, which
// is then published; concurrent GETs join the one upstream GET.
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
				}()
			}
			wg.Wait()
			waitStored(t, m.Store, d)
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
	waitFills(t, m.Proxy)
	if !stored(m, d.Hex) {
		t.Fatal("the fill did not store the blob after its client left")
	}
	hit := do(t, http.MethodGet, u, nil)
	if hit.StatusCode != 200 || hit.Header.Get("X-Pullthrough-Cache") != "hit" || !bytes.Equal(hit.body, body) {
		t.Errorf("after the fill: got %d %q, want a 200 hit with the layer", hit.StatusCode, hit.Header.Get("X-Pullthrough-Cache"))
	}
	if n := m.Up.Count(http.MethodGet, "blob"); n != 1 {
		t.Errorf("got %d upstream blob GETs, want 1", n)
	}
}

// A Range request for a cold blob (dockerd resumes with Range, containerd
// 2.1+ sends one on every layer GET) starts the fill and gets its 206 from
// the fill's stream; the fill carries on and stores the blob.
func TestColdRangeRequestFillsThenAnswers206(t *testing.T) {
	m, reg := newMirror(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{})
	img := testenv.SeedImage(t, reg, "org/app:1", 64<<10, 1)
	d, body := layerOf(t, img, 0)
	resp := do(t, http.MethodGet, m.URL+"/v2/org/app/blobs/"+d.String(), http.Header{"Range": {"bytes=100-199"}})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(resp.body, body[100:200]) {
		t.Fatalf("got %d with %d bytes, want 206 with bytes 100-199", resp.StatusCode, len(resp.body))
	}
	waitFills(t, m.Proxy)
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

// s3Hold holds chosen S3 requests at a front in front of versitygw until
// released (or for at most holdMax), then lets them through.
type s3Hold struct {
	match   func(r *http.Request) bool
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	held    int
}

const holdMax = 30 * time.Second

func (h *s3Hold) intercept(w http.ResponseWriter, r *http.Request) bool {
	if h.match(r) {
		h.mu.Lock()
		h.held++
		h.mu.Unlock()
		select {
		case <-h.release:
		case <-time.After(holdMax):
		}
	}
	return false
}

func (h *s3Hold) let() { h.once.Do(func() { close(h.release) }) }

func (h *s3Hold) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.held
}

// blobRequest matches an S3 request for a blob object (not a lease or a
// link): publishing it (PutObject, or CompleteMultipartUpload) or, with
// parts, uploading one of its parts.
func blobRequest(parts bool) func(r *http.Request) bool {
	return func(r *http.Request) bool {
		if !strings.Contains(r.URL.Path, "/blobs/sha256/") || strings.Contains(r.URL.Path, "/leases/") {
			return false
		}
		q := r.URL.Query()
		if parts {
			return r.Method == http.MethodPut && q.Has("partNumber")
		}
		return (r.Method == http.MethodPut && !q.Has("partNumber")) || (r.Method == http.MethodPost && q.Has("uploadId"))
	}
}

// heldStoreMirror serves a proxy over an S3 store (5 MiB parts, one
// uploading at a time) whose blob requests that hold matches wait for
// hold.let.
func heldStoreMirror(t *testing.T, hold *s3Hold) (base string, st *store.S3, up *testenv.Upstream, reg *url.URL) {
	t.Helper()
	srv := testenv.StartS3(t)
	target, _ := url.Parse(srv.Endpoint)
	front := testenv.NewUpstream(t, target)
	front.Intercept(hold.intercept)
	t.Cleanup(hold.let) // let held requests go before the servers stop
	st = store.NewS3(srv.ClientAt(front.URL.String()), srv.Bucket, "cache")
	if err := st.SetUploadTuning(store.UploadTuning{PartSize: 5 << 20, Concurrency: 1}); err != nil {
		t.Fatal(err)
	}
	_, base, up, reg = mirrorOn(t, st, proxy.Config{}, nil)
	return base, st, up, reg
}

// getWithin GETs u and reads the whole body, failing the test if that
// takes longer than d.
func getWithin(t *testing.T, u string, d time.Duration) []byte {
	t.Helper()
	client := &http.Client{Timeout: d}
	resp, err := client.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: got %d bytes, then %v", u, len(body), err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: got %d, want 200", u, resp.StatusCode)
	}
	return body
}

// waitStored polls the store until the blob is there.
func waitStored(t *testing.T, st proxy.Store, d v1.Hash) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !present(t, st, blobKeyOf(t, d)); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the blob was not published within 20s of its release")
		}
	}
}

// A streamed client gets the last byte once the upstream's bytes are in
// and verified, not once the blob is published in the store: with the
// store's publish held, the client still gets the whole blob, and so does
// a request that arrives meanwhile, from the same single upstream GET.
// The blob is published once the store answers.
func TestStreamedClientGetsVerifiedBlobBeforePublish(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int64
	}{
		{"one PutObject", 2 << 20},
		{"multipart", 12 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hold := &s3Hold{match: blobRequest(false), release: make(chan struct{})}
			base, st, up, reg := heldStoreMirror(t, hold)
			img := testenv.SeedImage(t, reg, "org/app:1", tc.size, 1)
			d, want := layerOf(t, img, 0)
			u := base + "/v2/org/app/blobs/" + d.String()
			for i := range 2 {
				if got := getWithin(t, u, 10*time.Second); !bytes.Equal(got, want) {
					t.Fatalf("client %d: got %d bytes, want the %d-byte layer", i, len(got), len(want))
				}
			}
			// A HEAD meanwhile (clients HEAD before a GET) is answered
			// from the fill too, not from the upstream. (The fill itself
			// asked the upstream with a HEAD whether this repository has
			// the blob: no manifest was pulled that links it.)
			gets := up.Count(http.MethodGet, "blob")
			up.Reset()
			if h := do(t, http.MethodHead, u, nil); h.StatusCode != http.StatusOK || h.ContentLength != int64(len(want)) {
				t.Errorf("HEAD during the publish: got %d with length %d, want 200 with %d", h.StatusCode, h.ContentLength, len(want))
			}
			if n := up.Count(http.MethodHead, "blob"); n != 0 {
				t.Errorf("HEAD during the publish: got %d upstream blob HEADs, want 0", n)
			}
			if present(t, st, blobKeyOf(t, d)) {
				t.Error("the blob is in the store while its publish is held")
			}
			hold.let()
			waitStored(t, st, d)
			if hold.count() == 0 {
				t.Error("no publish was held: the test proves nothing")
			}
			if n := gets + up.Count(http.MethodGet, "blob"); n != 1 {
				t.Errorf("got %d upstream blob GETs, want 1", n)
			}
		})
	}
}

// A streamed client is not held to the store's write speed: with every
// part upload held, a client still gets a blob larger than the upload's
// part buffers (2 × 5 MiB here) at the upstream's pace.
func TestStreamedClientNotHeldToStoreWrites(t *testing.T) {
	hold := &s3Hold{match: blobRequest(true), release: make(chan struct{})}
	base, st, up, reg := heldStoreMirror(t, hold)
	img := testenv.SeedImage(t, reg, "org/app:1", 16<<20, 1)
	d, want := layerOf(t, img, 0)
	if got := getWithin(t, base+"/v2/org/app/blobs/"+d.String(), 10*time.Second); !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want the %d-byte layer", len(got), len(want))
	}
	// The upload reaches its first part after the client may be done.
	for deadline := time.Now().Add(10 * time.Second); hold.count() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no part upload was held: the test proves nothing")
		}
	}
	hold.let()
	waitStored(t, st, d)
	if n := up.Count(http.MethodGet, "blob"); n != 1 {
		t.Errorf("got %d upstream blob GETs, want 1", n)
	}
}

// A streamed transfer the mirror cuts because the upstream's bytes fail
// their digest still gets its request line (one per request), marked
// aborted: the cut is the one request an operator must be able to see.
func TestCutStreamIsLogged(t *testing.T) {
	m, reg := newMirror(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{})
	img := testenv.SeedImage(t, reg, "org/app:1", 256<<10, 1)
	d, body := layerOf(t, img, 0)
	m.Up.SetFault(testenv.FaultCorrupt, "blob")
	resp, err := http.Get(m.URL + "/v2/org/app/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	got, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || rerr == nil {
		t.Fatalf("got %d with %d of %d bytes (read error %v), want a 200 whose transfer is cut", resp.StatusCode, len(got), len(body), rerr)
	}
	line := ""
	for deadline := time.Now().Add(5 * time.Second); line == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, l := range strings.Split(m.Logs.String(), "\n") {
			if strings.Contains(l, `"msg":"request"`) && strings.Contains(l, `"route":"blob"`) {
				line = l
			}
		}
	}
	if !strings.Contains(line, `"aborted":true`) || !strings.Contains(line, `"status":200`) {
		t.Errorf("got request line %q, want one with status 200 and aborted true", line)
	}
}
