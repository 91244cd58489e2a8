package testenv

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// ZooGHCR starts a GitHub Container Registry-like member:
//   - anonymous pulls still need a token, from a realm on the registry's own
//     host: `Bearer realm="https://ghcr.io/token",service="ghcr.io",
//     scope="repository:<name>:pull"` (Mic92/niks3#229, CodesWhat/drydock#87);
//   - blob GETs and HEADs answer 307 to a signed URL on a storage host
//     (pkg-containers.githubusercontent.com), which refuses HEAD
//     (/work/shared/FACTS.md, "ghcr storage"); the signature is checked.
func ZooGHCR(t testing.TB) *StandIn {
	t.Helper()
	backing := InProcessRegistry(t)
	rp := proxyTo(backing)
	storage := serveHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("sig") != "ok" {
			http.Error(w, "<Error><Code>AuthenticationFailed</Code></Error>", http.StatusForbidden)
			return
		}
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		r.URL.RawQuery = ""
		rp.ServeHTTP(w, r)
	}))
	gate := &anonTokens{realmPath: "/token", challenge: func(host, repo string) string {
		return fmt.Sprintf(`Bearer realm="http://%s/token",service=%q,scope="repository:%s:pull"`, host, host, repo)
	}}
	front := serveHandler(t, gate.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/sha256:") {
			w.Header().Set("Location", storage.String()+r.URL.Path+"?se=2099-01-01&sig=ok")
			w.WriteHeader(http.StatusTemporaryRedirect)
			return
		}
		rp.ServeHTTP(w, r)
	})))
	return &StandIn{Front: front, Backing: backing, Other: storage, gates: []*anonTokens{gate}}
}
