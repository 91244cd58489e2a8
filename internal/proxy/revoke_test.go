package proxy_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// revoke makes the upstream refuse one repository the way a token-auth
// registry does once it is made private, taken down or deleted: the token
// server still issues a token (anonymous or not) but grants no access to
// the repository, and the registry answers every request with the token
// 401 and a challenge carrying error="insufficient_scope" (distribution's
// docs/spec/auth/token.md and jwt.md: the token carries only the granted
// subset of the requested scope; Docker Hub answers 401 UNAUTHORIZED for
// private and deleted repositories alike). With status 403 it answers as
// registries that say FORBIDDEN instead. tokenDown makes the token
// endpoint fail too, which is trouble, not a revocation.
func revoke(up *testenv.Upstream, repo string, status int, tokenDown bool) {
	realm := up.URL.String() + "/token"
	up.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/token" && tokenDown {
			http.Error(w, "token service unavailable", http.StatusServiceUnavailable)
			return true
		}
		if !strings.HasPrefix(r.URL.Path, "/v2/"+repo+"/") {
			return false
		}
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q,service="testenv",scope="repository:%s:pull",error="insufficient_scope"`, realm, repo))
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		code := map[int]string{401: "UNAUTHORIZED", 403: "DENIED"}[status]
		fmt.Fprintf(w, `{"errors":[{"code":%q,"message":"access to the resource is denied"}]}`, code)
		return true
	})
}

// TestRevokedTagIsNotServedStale: once the upstream denies a repository
// even after the token flow, an expired cached tag is answered 403 DENIED,
// not served stale forever; PULLTHROUGH_DENIED_GRACE keeps serving it for
// a while after its last confirmation; a token service that fails is
// upstream trouble and still serves the cached tag stale.
func TestRevokedTagIsNotServedStale(t *testing.T) {
	for _, tc := range []struct {
		name      string
		status    int
		tokenDown bool
		grace     time.Duration
		want      int
		cache     string
	}{
		{"401 after the token flow", http.StatusUnauthorized, false, 0, http.StatusForbidden, ""},
		{"403", http.StatusForbidden, false, 0, http.StatusForbidden, ""},
		{"401 within the grace", http.StatusUnauthorized, false, time.Hour, http.StatusOK, "stale"},
		{"token service failing", http.StatusUnauthorized, true, 0, http.StatusOK, "stale"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := testenv.InProcessRegistry(t)
			up := testenv.NewUpstream(t, reg)
			up.RequireToken("", "", "")
			testenv.SeedImage(t, reg, "org/app:1", 2<<10, 1)
			m := mirrorFor(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways, DeniedGrace: tc.grace}, proxy.UpstreamConfig{}, up)
			testenv.PullImage(t, m.URL, "org/app:1")

			up.Reset()
			revoke(up, "org/app", tc.status, tc.tokenDown)
			resp := do(t, http.MethodGet, m.URL+"/v2/org/app/manifests/1", nil)
			if resp.StatusCode != tc.want || resp.Header.Get("X-Pullthrough-Cache") != tc.cache {
				t.Fatalf("got %d (cache %q), want %d (cache %q)", resp.StatusCode, resp.Header.Get("X-Pullthrough-Cache"), tc.want, tc.cache)
			}
			if tc.want == http.StatusForbidden {
				assertOCIError(t, resp, "DENIED")
				if n := up.Count(http.MethodGet, "token"); tc.status == http.StatusUnauthorized && n < 1 {
					t.Errorf("got %d token requests, want the token flow to run before denying", n)
				}
			}
		})
	}
}
