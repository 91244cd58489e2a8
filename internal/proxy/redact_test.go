package proxy_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"testing"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// An upstream blob redirect the mirror cannot follow (here: a CDN host that
// refuses connections) fails the request; the log line says why but must
// not hold the signed URL's credential.
func TestSignedURLsNeverReachTheLog(t *testing.T) {
	reg := testenv.InProcessRegistry(t)
	img := testenv.SeedImage(t, reg, "library/app:1", 8<<10, 1)
	dead := httptest.NewTLSServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close() // nothing listens there any more
	rp := httputil.NewSingleHostReverseProxy(reg)
	const secret = "X-Amz-Signature=0123456789abcdef&X-Amz-Security-Token=SESSIONTOKEN"
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			// Docker Hub-like: blobs are a 307 to a signed CDN URL.
			http.Redirect(w, r, deadURL+"/blob?"+secret, http.StatusTemporaryRedirect)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)
	m := multiMirror(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{Host: "docker.io", URL: up.URL})
	d, _ := layerOf(t, img, 0)
	resp := do(t, http.MethodGet, m.URL+"/v2/library/app/blobs/"+d.String(), nil)
	if resp.StatusCode < 500 {
		t.Fatalf("got %d, want a 5xx for an unreachable blob source", resp.StatusCode)
	}
	logs := m.Logs.String()
	if !strings.Contains(logs, deadURL) {
		t.Fatalf("log does not say which URL failed (want its host, without the query):\n%s", logs)
	}
	for _, s := range []string{"0123456789abcdef", "SESSIONTOKEN"} {
		if strings.Contains(logs, s) || strings.Contains(string(resp.body), s) {
			t.Errorf("signed URL credential %q reached the log or the response:\n%s\n%s", s, logs, resp.body)
		}
	}
}
