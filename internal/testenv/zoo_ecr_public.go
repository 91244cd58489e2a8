package testenv

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// ZooECRPublic starts an Amazon ECR Public-like member:
//   - anonymous tokens from a realm on its own host with a registry-wide
//     scope: `Bearer realm="https://public.ecr.aws/token/",
//     service="public.ecr.aws",scope="aws"` (helm/helm#12491, observed
//     header);
//   - HEAD on a blob answers 401 even with a valid token, while GET works
//     (aws/containers-roadmap#2671; buildbuddy-io/buildbuddy#12566), and a
//     ranged GET answers 206 with Content-Range (sky22333/hubproxy#66);
//   - blob GETs answer 307 to a CDN host (CloudFront in front of S3).
func ZooECRPublic(t testing.TB) *StandIn {
	t.Helper()
	backing := InProcessRegistry(t)
	rp := proxyTo(backing)
	cdn := serveHandler(t, rp)
	gate := &anonTokens{realmPath: "/token/", challenge: func(host, _ string) string {
		return fmt.Sprintf(`Bearer realm="http://%s/token/",service=%q,scope="aws"`, host, host)
	}}
	// HEAD of a blob fails whatever the token: the gate sees it without one.
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/") {
			w.Header().Set("Location", cdn.String()+r.URL.Path)
			w.WriteHeader(http.StatusTemporaryRedirect)
			return
		}
		rp.ServeHTTP(w, r)
	})
	gated := gate.wrap(inner)
	front := serveHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/blobs/") {
			r.Header.Del("Authorization")
		}
		gated.ServeHTTP(w, r)
	}))
	return &StandIn{Front: front, Backing: backing, Other: cdn, gates: []*anonTokens{gate}}
}
