package testenv

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// ECRPublicLike stands in for Amazon ECR Public:
//   - anonymous tokens from a realm on its own host with a registry-wide
//     scope: `Bearer realm="https://public.ecr.aws/token/",
//     service="public.ecr.aws",scope="aws"` (helm/helm#12491, observed
//     header);
//   - HEAD on a blob answers 401 even with a valid token, while GET works
//     (aws/containers-roadmap#2671; buildbuddy-io/buildbuddy#12566), and a
//     ranged GET answers 206 with Content-Range (sky22333/hubproxy#66);
//   - blob GETs answer 307 to a CDN host (CloudFront in front of S3).
//
// Other is the CDN host.
func ECRPublicLike(t testing.TB) *ZooMember {
	t.Helper()
	reg := InProcessRegistry(t)
	cdn := serveHandler(t, proxyTo(reg))
	gate := &anonTokens{realmPath: "/token/", challenge: func(host, _ string) string {
		return fmt.Sprintf(`Bearer realm="http://%s/token/",service=%q,scope="aws"`, host, host)
	}}
	m := NewZooMember(t, "ECR Public-like", reg, noBlobHeadToken, gate.wrap, blobsRedirectTo(cdn, ""))
	m.Other, m.gates = cdn, []*anonTokens{gate}
	return m
}

// noBlobHeadToken makes a blob HEAD fail whatever its token: the token
// gate behind it sees the HEAD without one.
func noBlobHeadToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/blobs/") {
			r.Header.Del("Authorization")
		}
		next.ServeHTTP(w, r)
	})
}
