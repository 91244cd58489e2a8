package testenv

import (
	"net/http"
	"testing"
)

// ArtifactoryLike stands in for an Artifactory-style remote repository:
// manifest GET works, manifest HEAD is refused with 405 (issue 9; FACTS:
// "some registries answer HEAD on manifests with 404/405").
func ArtifactoryLike(t testing.TB) *ZooMember {
	t.Helper()
	return NewZooMember(t, "Artifactory-like", nil, NoManifestHead(http.StatusMethodNotAllowed))
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
