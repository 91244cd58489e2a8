package testenv

import (
	"net/http"
	"strings"
	"testing"
)

// ZooArtifactoryReferrers starts a member that, like JFrog Artifactory,
// has no OCI referrers API and answers GET /v2/<name>/referrers/<digest>
// with 406 Not Acceptable instead of the 404 the OCI distribution spec's
// fallback rule names (google/go-containerregistry#1962). Referrers live
// under the tag schema (<alg>-<hex> tags) in the backing registry.
func ZooArtifactoryReferrers(t testing.TB) *StandIn {
	t.Helper()
	backing := InProcessRegistry(t)
	rp := proxyTo(backing)
	front := serveHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/referrers/") {
			http.Error(w, "Not Acceptable", http.StatusNotAcceptable)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	return &StandIn{Front: front, Backing: backing}
}
