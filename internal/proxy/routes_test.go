package proxy_test

import (
	"net/http"
	"testing"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// TestPathPrefixWithNamespace is containerd's path-prefixed mirror
// (hosts.toml `[host."https://mirror/v2/docker.io"]` with override_path):
// every request has both a host prefix and ?ns=. The prefix names the same
// registry as ns, or an alias of it; one naming another configured
// registry is refused without any upstream request.
func TestPathPrefixWithNamespace(t *testing.T) {
	m, hub, ghcr, _ := newTwoRegistries(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{}, proxy.UpstreamConfig{})
	hubDigest := testenv.PullImage(t, m.URL, "library/alpine:latest").String()
	ghcrDigest := testenv.PullImage(t, m.URL, "ghcr.io/library/alpine:latest").String()
	for _, tc := range []struct {
		path   string
		status int
		digest string // Docker-Content-Digest on success, else the error code
	}{
		{"/v2/docker.io/library/alpine/manifests/latest?ns=docker.io", 200, hubDigest},
		{"/v2/docker.io/alpine/manifests/latest?ns=docker.io", 200, hubDigest},
		{"/v2/index.docker.io/library/alpine/manifests/latest?ns=docker.io", 200, hubDigest},
		{"/v2/registry-1.docker.io/library/alpine/manifests/latest?ns=docker.io", 200, hubDigest},
		{"/v2/docker.io/library/alpine/manifests/latest?ns=registry-1.docker.io", 200, hubDigest},
		{"/v2/ghcr.io/library/alpine/manifests/latest?ns=ghcr.io", 200, ghcrDigest},
		{"/v2/ghcr.io/library/alpine/manifests/latest?ns=docker.io", 400, "NAME_INVALID"},
		{"/v2/docker.io/library/alpine/manifests/latest?ns=ghcr.io", 400, "NAME_INVALID"},
		{"/v2/docker.io/library/alpine/tags/list?ns=ghcr.io", 400, "NAME_INVALID"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			hub.Reset()
			ghcr.Reset()
			resp := do(t, http.MethodGet, m.URL+tc.path, nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("got %d, want %d: %s", resp.StatusCode, tc.status, resp.body)
			}
			if tc.status != 200 {
				assertOCIError(t, resp, tc.digest)
				if n := hub.Total() + ghcr.Total(); n != 0 {
					t.Errorf("a refused request made %d upstream requests, want 0", n)
				}
				return
			}
			if got := resp.Header.Get("Docker-Content-Digest"); got != tc.digest {
				t.Errorf("got digest %s, want %s", got, tc.digest)
			}
		})
	}
}
