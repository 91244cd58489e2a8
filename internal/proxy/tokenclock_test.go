package proxy_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// TestTokenExpiryFollowsTheClock: a bearer token is reused while the
// upstream's clock says it is valid and fetched again once that clock
// passes its expiry (the 300 s expires_in of testenv's token service,
// renewed 10 s early), without a test having to sleep.
func TestTokenExpiryFollowsTheClock(t *testing.T) {
	reg := testenv.InProcessRegistry(t)
	up := testenv.NewUpstream(t, reg)
	testenv.SeedImage(t, reg, "private/app:1", 1<<10, 1)
	up.RequireToken("", "robot", "s3cret-value")
	h, _ := newProxy(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{URL: up.URL.String(), Username: "robot", Password: "s3cret-value"})
	clock := &fakeClock{}
	h.SetUpstreamClock(clock.now)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	for _, step := range []struct {
		advance    time.Duration
		wantTokens int
	}{
		{0, 1},                 // first request: a token
		{280 * time.Second, 1}, // still valid: reused
		{15 * time.Second, 2},  // 295 s after issue: past the early renewal, fetched again
		{200 * time.Second, 2}, // the new one is reused
		{time.Hour, 3},         // long after: fetched again
	} {
		clock.advance(step.advance)
		resp := do(t, http.MethodGet, srv.URL+"/v2/private/app/manifests/1", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("got %d, want 200", resp.StatusCode)
		}
		if n := up.Count(http.MethodGet, "token"); n != step.wantTokens {
			t.Errorf("after advancing %s: got %d token requests, want %d", step.advance, n, step.wantTokens)
		}
	}
}
