package proxy_test

import (
	"context"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// lambdaMirror is a proxy configured as in Lambda: fills that may outlast
// a request go to BackgroundFill. The stand-in for the function's
// asynchronous invocation of itself queues each job; run starts them, each
// in its own goroutine calling RunFill, as the Lambda handler does
// (functions/registry/lambda.go). Lambda queues Event invocations and may
// start them late, which holding them until run models.
type lambdaMirror struct {
	*mirror
	proxy *proxy.Proxy

	mu      sync.Mutex
	queued  []proxy.FillJob
	invoked int
	done    sync.WaitGroup
	errs    []error
}

func newLambdaMirror(t *testing.T, cfg proxy.Config, upCfgs ...proxy.UpstreamConfig) *lambdaMirror {
	t.Helper()
	lm := &lambdaMirror{}
	cfg.BackgroundFill = func(ctx context.Context, job proxy.FillJob) error {
		lm.mu.Lock()
		defer lm.mu.Unlock()
		lm.invoked++
		lm.queued = append(lm.queued, job)
		return nil
	}
	lm.proxy, lm.mirror = newProxy(t, cfg, upCfgs...)
	srv := httptest.NewServer(lm.proxy)
	t.Cleanup(srv.Close)
	t.Cleanup(lm.done.Wait)
	lm.URL = srv.URL
	return lm
}

// run starts every queued job and waits for them (at most a minute).
func (lm *lambdaMirror) run(t *testing.T) {
	t.Helper()
	lm.mu.Lock()
	jobs := lm.queued
	lm.queued = nil
	lm.mu.Unlock()
	for _, job := range jobs {
		lm.done.Add(1)
		go func() {
			defer lm.done.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := lm.proxy.RunFill(ctx, job); err != nil {
				lm.mu.Lock()
				lm.errs = append(lm.errs, err)
				lm.mu.Unlock()
			}
		}()
	}
	lm.done.Wait()
	lm.mu.Lock()
	defer lm.mu.Unlock()
	for _, err := range lm.errs {
		t.Errorf("fill job: %v", err)
	}
}

func (lm *lambdaMirror) invocations() int {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	return lm.invoked
}

// In Lambda a warm of a blob of LargeBlobSize or more must not fill it
// inside the warm request (the invocation may end first): it hands the
// fill to an invocation of its own and reports that, and the blob is then
// in the store.
func TestWarmLargeBlobInLambdaFillsInItsOwnInvocation(t *testing.T) {
	reg := testenv.InProcessRegistry(t)
	up := testenv.NewUpstream(t, reg)
	m := newLambdaMirror(t, proxy.Config{
		ManifestTTL:     proxy.RevalidateAlways,
		LargeBlobPolicy: proxy.PolicyWait,
		LargeBlobSize:   256 << 10,
		Access:          proxy.AccessConfig{Tokens: []string{"warm-token"}},
	}, proxy.UpstreamConfig{Host: "docker.io", URL: up.URL.String()})
	img := testenv.SeedImage(t, reg, "library/cuda:1", 1<<20, 1)
	d, body := layerOf(t, img, 0)

	req, _ := http.NewRequest(http.MethodPost, m.URL+"/_pullthrough/warm", strings.NewReader(`{"image":"cuda:1"}`))
	req.Header.Set("Authorization", "Bearer warm-token")
	resp := send(t, req)
	if resp.StatusCode != 200 || !strings.HasSuffix(string(resp.body), "done\n") {
		t.Fatalf("warm: got %d %q, want 200 ending in done", resp.StatusCode, resp.body)
	}
	if n := m.invocations(); n != 1 {
		t.Fatalf("warm: got %d fill invocations, want 1 (the large layer)", n)
	}
	m.run(t)
	got := do(t, http.MethodGet, m.URL+"/v2/library/cuda/blobs/"+d.String(), http.Header{"Authorization": {"Bearer warm-token"}})
	if got.StatusCode != 200 || got.Header.Get("X-Pullthrough-Cache") != "hit" || string(got.body) != string(body) {
		t.Errorf("after the warm: got %d %q, want a 200 hit with the layer", got.StatusCode, got.Header.Get("X-Pullthrough-Cache"))
	}
}

// Issue 11 item 2: in Lambda every GET of an uncached large blob that is
// sent to the upstream's CDN used to start another fill invocation, even
// while the first one's lease was live. A loop of such GETs must start one.
func TestLambdaRequestLoopStartsOneBackgroundFill(t *testing.T) {
	c := newCDNRegistry(t)
	m := newLambdaMirror(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways, LargeBlobPolicy: proxy.PolicyUpstream},
		proxy.UpstreamConfig{Host: "docker.io", URL: c.upstream.URL, Transport: c.cdn.Client().Transport})
	img := testenv.SeedImage(t, c.reg, "library/cuda:1", 256<<10, 1)
	d, body := layerOf(t, img, 0)
	const loop = 10
	for i := range loop {
		resp, err := testenv.NoRedirect.Get(m.URL + "/v2/library/cuda/blobs/" + d.String())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTemporaryRedirect {
			t.Fatalf("GET %d: got %d, want 307 to the upstream", i, resp.StatusCode)
		}
	}
	if n := m.invocations(); n != 1 {
		t.Errorf("%d GETs of one uncached blob started %d fill invocations, want 1", loop, n)
	}
	m.run(t) // the queued invocation starts late, under the lease taken for it
	got := do(t, http.MethodGet, m.URL+"/v2/library/cuda/blobs/"+d.String(), nil)
	if got.StatusCode != 200 || got.Header.Get("X-Pullthrough-Cache") != "hit" || string(got.body) != string(body) {
		t.Errorf("after the fill: got %d %q, want a 200 hit", got.StatusCode, got.Header.Get("X-Pullthrough-Cache"))
	}
	if keys := leaseObjects(t, m.Store.Root()); len(keys) != 0 {
		t.Errorf("leases left behind: %v", keys)
	}
}

// leaseObjects lists the lease files under a filesystem store's root.
func leaseObjects(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(filepath.Join(root, "leases"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, path)
		}
		return nil
	})
	return out
}

// Issue 11 item 3: clients that hang up leave their fills running (by
// design: the retry should find the bytes), so a burst of abandoned
// requests for distinct uncached blobs must not start a download each.
// Beyond MaxFills a request gets 503 with Retry-After at once, and no
// upstream request.
func TestFillCapRefusesBeyondMaxFills(t *testing.T) {
	reg := testenv.InProcessRegistry(t)
	up := testenv.NewUpstream(t, reg)
	const maxFills, requests = 4, 32
	m := mirrorFor(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways, MaxFills: maxFills, FillWait: 100 * time.Millisecond}, proxy.UpstreamConfig{}, up)
	img := testenv.SeedImage(t, reg, "org/many:1", 16<<10, requests)
	layers, _ := img.Layers()
	up.Reset()
	// Blob GETs stall until the requests have all been answered: the
	// fills they start are still running when their clients hang up.
	release := make(chan struct{})
	up.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if testenv.Kind(r.URL.Path) == "blob" {
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
		}
		return false
	})
	type answer struct {
		status     int
		retryAfter string
	}
	answers := make(chan answer, requests)
	for _, l := range layers {
		d, _ := l.Digest()
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.URL+"/v2/org/many/blobs/"+d.String(), nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				answers <- answer{}
				return
			}
			resp.Body.Close() // the client hangs up
			answers <- answer{resp.StatusCode, resp.Header.Get("Retry-After")}
		}()
	}
	for range requests {
		a := <-answers
		if a.status != http.StatusServiceUnavailable || a.retryAfter == "" {
			t.Errorf("got %d Retry-After %q, want 503 with Retry-After (a fill pending or refused)", a.status, a.retryAfter)
		}
	}
	if n := up.Count(http.MethodGet, "blob"); n > maxFills {
		t.Errorf("%d abandoned requests started %d upstream downloads, want at most %d", requests, n, maxFills)
	}
	// The fills that did start finish for their clients' retries.
	close(release)
	d, body := layerOf(t, img, 0)
	last := retryUntilOK(t, m.URL+"/v2/org/many/blobs/"+d.String())
	if last.StatusCode != 200 || string(last.body) != string(body) {
		t.Errorf("retry of one layer: got %d, want the layer", last.StatusCode)
	}
}

// Issue 11 item 4: fills in this process are shared by upstream,
// repository and digest. A 404 from registry B must not fail a concurrent
// request to registry A for the same digest.
func TestFillFailureIsNotSharedAcrossUpstreams(t *testing.T) {
	regA, regB := testenv.InProcessRegistry(t), testenv.InProcessRegistry(t)
	upA, upB := testenv.NewUpstream(t, regA), testenv.NewUpstream(t, regB)
	m := multiMirror(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways},
		proxy.UpstreamConfig{Host: "a.example", URL: upA.URL.String()},
		proxy.UpstreamConfig{Host: "b.example", URL: upB.URL.String()})
	img := testenv.SeedImage(t, regA, "org/app:1", 64<<10, 1)
	testenv.SeedImage(t, regB, "org/app:1", 1<<10, 1) // the repository exists on B, the blob does not
	d, body := layerOf(t, img, 0)
	upB.SetFault(testenv.FaultSlow, "blob") // B's 404 comes after 2 s

	fromB := make(chan response, 1)
	go func() { fromB <- do(t, http.MethodGet, m.URL+"/v2/b.example/org/app/blobs/"+d.String(), nil) }()
	time.Sleep(300 * time.Millisecond) // B's fill is under way
	a := do(t, http.MethodGet, m.URL+"/v2/a.example/org/app/blobs/"+d.String(), nil)
	if a.StatusCode != 200 || string(a.body) != string(body) {
		t.Errorf("registry A, while B's fill of the digest fails: got %d %s, want 200 with the layer", a.StatusCode, a.body)
	}
	if b := <-fromB; b.StatusCode != http.StatusNotFound {
		t.Errorf("registry B: got %d, want 404", b.StatusCode)
	}
}

// Issue 11 item 10: ten identical GETs of a blob the upstream does not
// have cost one upstream GET, one lease write and delete, and one store
// HEAD each, not ten upstream GETs, ten lease writes and deletes and twenty
// HEADs.
func TestMissingBlobIsAskedUpstreamOnce(t *testing.T) {
	var leasePuts, leaseDeletes, heads atomic.Int32
	c := newLeaseCluster(t, func(w http.ResponseWriter, r *http.Request) bool {
		switch lease := strings.Contains(r.URL.Path, "/leases/"); {
		case r.Method == http.MethodPut && lease:
			leasePuts.Add(1)
		case r.Method == http.MethodDelete && lease:
			leaseDeletes.Add(1)
		case r.Method == http.MethodHead:
			heads.Add(1)
		}
		return false
	})
	base := c.instance()
	missing := digest.FromString("not on the upstream")
	for i := range 10 {
		resp := do(t, http.MethodGet, base+"/v2/org/app/blobs/"+missing.String(), nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET %d: got %d, want 404", i, resp.StatusCode)
		}
		assertOCIError(t, resp, "BLOB_UNKNOWN")
	}
	// One upstream request in all (the fill's HEAD, which the 404 answers
	// before any lease is written; then the 404 is remembered).
	if n := c.up.Count("", "blob"); n != 1 {
		t.Errorf("got %d upstream blob requests, want 1", n)
	}
	if p, d := leasePuts.Load(), leaseDeletes.Load(); p > 1 || d > 1 {
		t.Errorf("got %d lease writes and %d deletes, want at most 1 of each", p, d)
	}
	// One look in the store per request, and one more under the lease.
	if n := heads.Load(); n > 11 {
		t.Errorf("got %d store HEADs, want at most 11", n)
	}
}

// retryUntilOK GETs u every 200 ms until it answers 200, for at most 30 s,
// as a client honouring 503 and Retry-After does (faster), and returns the
// last answer.
func retryUntilOK(t *testing.T, u string) response {
	t.Helper()
	var last response
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if last = do(t, http.MethodGet, u, nil); last.StatusCode == 200 {
			break
		}
	}
	return last
}
