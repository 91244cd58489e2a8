package proxy_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

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
