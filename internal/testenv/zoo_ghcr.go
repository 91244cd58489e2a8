package testenv

import (
	"fmt"
	"net/http"
	"testing"
)

// GHCRLike stands in for the GitHub Container Registry:
//   - anonymous pulls still need a token, from a realm on the registry's own
//     host: `Bearer realm="https://ghcr.io/token",service="ghcr.io",
//     scope="repository:<name>:pull"` (Mic92/niks3#229, CodesWhat/drydock#87);
//   - blob GETs and HEADs answer 307 to a signed URL on a storage host
//     (pkg-containers.githubusercontent.com), which refuses HEAD
//     (/work/shared/FACTS.md, "ghcr storage"); the signature is checked.
//
// Other is the storage host.
func GHCRLike(t testing.TB) *ZooMember {
	t.Helper()
	reg := InProcessRegistry(t)
	rp := proxyTo(reg)
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
	m := NewZooMember(t, "GHCR-like", reg, gate.wrap, blobsRedirectTo(storage, "?se=2099-01-01&sig=ok"))
	m.Other, m.gates = storage, []*anonTokens{gate}
	return m
}
