package proxy_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/testenv"
	"github.com/pullthrough/pullthrough/internal/upstream"
)

// TestHangingUpstream: an upstream that accepts connections and never
// answers (testenv.FaultHang, as in quay/quay PR #5347 and
// goharbor/harbor #18294, PR #23714) costs the mirror one timeout, not one
// per request: the first request for an expired cached tag waits for its
// revalidation's first-byte deadline and is served stale; the requests
// after it are served stale without asking the upstream at all, and a
// cold request fails at once with 503. Once the failing interval has
// passed and the upstream answers again, the tag is revalidated. The
// verdicts are the upstream's request counts, not timings.
func TestHangingUpstream(t *testing.T) {
	m, reg := newMirror(t, proxy.Config{ManifestTTL: time.Hour},
		proxy.UpstreamConfig{Timeouts: upstream.Timeouts{FirstByte: 500 * time.Millisecond}})
	clock := &fakeClock{}
	m.Proxy.SetClock(clock.now)
	img := testenv.SeedImage(t, reg, "org/app:1", 1<<10, 1)
	want, _ := img.Digest()
	testenv.PullImage(t, m.URL, "org/app:1")
	testenv.SeedImage(t, reg, "org/cold:1", 1<<10, 1)

	m.Up.SetFault(testenv.FaultHang, "")
	clock.advance(2 * time.Hour)
	m.Up.Reset()
	for i, method := range []string{http.MethodGet, http.MethodHead, http.MethodGet, http.MethodHead, http.MethodGet} {
		start := time.Now()
		resp := do(t, method, m.URL+"/v2/org/app/manifests/1", nil)
		t.Logf("request %d (%s): %d in %v", i+1, method, resp.StatusCode, time.Since(start).Round(time.Millisecond))
		if got := resp.Header.Get("Docker-Content-Digest"); resp.StatusCode != http.StatusOK || got != want.String() {
			t.Fatalf("request %d (%s): got %d %s, want 200 %s", i+1, method, resp.StatusCode, got, want)
		}
		if c := resp.Header.Get("X-Pullthrough-Cache"); c != "stale" {
			t.Errorf("request %d (%s): got cache %q, want stale", i+1, method, c)
		}
	}
	if n := m.Up.Total(); n != 1 {
		t.Errorf("got %d upstream requests for 5 requests during the outage, want 1 (the first revalidation)", n)
	}

	resp := do(t, http.MethodGet, m.URL+"/v2/org/cold/manifests/1", nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("cold tag during the outage: got %d, want 503", resp.StatusCode)
	}
	assertOCIError(t, resp, "UNAVAILABLE")
	if n := m.Up.Total(); n != 1 {
		t.Errorf("cold tag during the outage: got %d upstream requests in all, want 1 (not asked)", n)
	}

	m.Up.SetFault(testenv.FaultNone, "")
	clock.advance(upstream.FailingFor + time.Second)
	resp = do(t, http.MethodGet, m.URL+"/v2/org/app/manifests/1", nil)
	if c := resp.Header.Get("X-Pullthrough-Cache"); resp.StatusCode != http.StatusOK || c != "revalidated" {
		t.Errorf("after the outage: got %d, cache %q; want 200, revalidated", resp.StatusCode, c)
	}
}
