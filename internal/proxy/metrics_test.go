package proxy_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// In Lambda each request line is also a CloudWatch Embedded Metric Format
// document: hits, misses, bytes filled and the upstream's rate-limit budget.
func TestRequestLogCarriesMetrics(t *testing.T) {
	reg := testenv.InProcessRegistry(t)
	up := testenv.NewUpstream(t, reg)
	up.SetHeader("Ratelimit-Remaining", "42;w=21600")
	m := mirrorFor(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways, EmbeddedMetrics: true, MetricsFunction: "pullthrough"}, proxy.UpstreamConfig{Host: "docker.io"}, up)
	img := testenv.SeedImage(t, reg, "library/app:1", 8<<10, 1)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	size, _ := layers[0].Size()
	do(t, http.MethodGet, m.URL+"/v2/library/app/blobs/"+ld.String(), nil)
	waitFills(t, m.Proxy) // a streamed fill publishes after its last byte
	do(t, http.MethodGet, m.URL+"/v2/library/app/blobs/"+ld.String(), nil)

	// The request line is written after the response: wait for both.
	lines := requestLines(t, m, 2)
	miss, hit := lines[0], lines[1]
	aws, _ := miss["_aws"].(map[string]any)
	directives, _ := aws["CloudWatchMetrics"].([]any)
	if len(directives) != 1 || directives[0].(map[string]any)["Namespace"] != "pullthrough" {
		t.Fatalf("no EMF directive in %v", miss)
	}
	for k, want := range map[string]float64{"Misses": 1, "Hits": 0, "BytesFilled": float64(size), "UpstreamRateLimitRemaining": 42, "UpstreamErrors": 0} {
		if miss[k] != want {
			t.Errorf("miss line: got %s=%v, want %v", k, miss[k], want)
		}
	}
	dims := directives[0].(map[string]any)["Dimensions"].([]any)[0].([]any)
	if len(dims) != 2 || dims[0] != "Function" || dims[1] != "Upstream" || miss["Function"] != "pullthrough" {
		t.Errorf("got dimensions %v with Function %v, want [Function Upstream] and pullthrough", dims, miss["Function"])
	}
	if miss["Upstream"] != "docker.io" || miss["request_id"] == "" {
		t.Errorf("miss line: got Upstream %v request_id %v", miss["Upstream"], miss["request_id"])
	}
	if hit["Hits"] != float64(1) || hit["BytesFilled"] != float64(0) {
		t.Errorf("hit line: got Hits %v BytesFilled %v", hit["Hits"], hit["BytesFilled"])
	}
}

// A manifest answer that went upstream carries the upstream's rate-limit
// budget, so an operator (and `pullthrough doctor`) can see how many pulls
// the mirror's address has left; a cache hit did not ask and says nothing.
func TestManifestAnswersPassTheUpstreamRateLimit(t *testing.T) {
	reg := testenv.InProcessRegistry(t)
	up := testenv.NewUpstream(t, reg)
	up.SetHeader("Ratelimit-Remaining", "42;w=21600")
	m := mirrorFor(t, proxy.Config{ManifestTTL: time.Hour}, proxy.UpstreamConfig{Host: "docker.io"}, up)
	testenv.SeedImage(t, reg, "library/app:1", 1<<10, 1)
	const h = "X-Pullthrough-Upstream-Ratelimit-Remaining"
	for _, tc := range []struct {
		name, method, cache, want string
	}{
		{"miss", http.MethodHead, "miss", "42;w=21600"},
		{"hit", http.MethodGet, "hit", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := do(t, tc.method, m.URL+"/v2/library/app/manifests/1", nil)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Pullthrough-Cache") != tc.cache {
				t.Fatalf("got %d cache %q, want 200 %s", resp.StatusCode, resp.Header.Get("X-Pullthrough-Cache"), tc.cache)
			}
			if got := resp.Header.Get(h); got != tc.want {
				t.Errorf("got %s %q, want %q", h, got, tc.want)
			}
		})
	}
}
