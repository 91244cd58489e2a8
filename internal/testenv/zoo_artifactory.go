package testenv

import (
	"net/http"
	"strings"
	"testing"
)

// ArtifactoryLike stands in for a JFrog Artifactory-style remote
// repository: manifest GET works, manifest HEAD is refused with 405
// (issue 9; FACTS: "some registries answer HEAD on manifests with
// 404/405"), and there is no referrers API (NoReferrersAPI): referrers
// live under the tag schema (<alg>-<hex> tags) in the registry behind it.
func ArtifactoryLike(t testing.TB) *ZooMember {
	t.Helper()
	return NewZooMember(t, "Artifactory-like", nil, NoManifestHead(http.StatusMethodNotAllowed), NoReferrersAPI)
}

// NoManifestHead answers every manifest HEAD with status (405, 404 and 403
// are all seen from real registries and proxies in front of them) and an
// error body, while GET goes through.
func NoManifestHead(status int) Quirk {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, _, ok := manifestRef(r.URL.Path); ok && r.Method == http.MethodHead {
				if status == http.StatusMethodNotAllowed {
					w.Header().Set("Allow", "GET")
				}
				w.WriteHeader(status)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// NoReferrersAPI answers GET /v2/<name>/referrers/<digest> as JFrog
// Artifactory does, with 406 Not Acceptable instead of the 404 the OCI
// distribution spec's fallback rule names
// (google/go-containerregistry#1962).
func NoReferrersAPI(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/referrers/") {
			http.Error(w, "Not Acceptable", http.StatusNotAcceptable)
			return
		}
		next.ServeHTTP(w, r)
	})
}
