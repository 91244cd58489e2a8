package testenv

import (
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
	"testing"
)

// K8sRegistryPrefix is the path prefix the registry.k8s.io-like member's
// redirect host keeps its repositories under.
const K8sRegistryPrefix = "k8s-artifacts-prod/images"

// K8sRegistryLike stands in for registry.k8s.io: a redirector in front of
// a regional registry on another host. Modelled on archeio
// (kubernetes/registry.k8s.io cmd/archeio/internal/app/handlers.go and
// docs/request-handling.md):
//   - only GET and HEAD; /v2/ answers 401 with a Bearer challenge whose
//     realm is its own /token (a pull-correlation id, not auth), /token
//     hands it out; /v2/_catalog is 404;
//   - every other /v2/... request answers 307 to the regional Artifact
//     Registry host at path.Join("/v2/", <prefix>, <rest of the path>) plus
//     ?rid=<trace id>: the client's own query is dropped;
//
// and the regional host is Artifact Registry-like: it wants its own
// anonymous token, `Bearer realm="https://<loc>-docker.pkg.dev/v2/token",
// service="<loc>-docker.pkg.dev",scope="repository:<repo>:pull"`
// (docker/setup-buildx-action#79, apple/container#2274, observed headers).
// Other is the regional host.
func K8sRegistryLike(t testing.TB) *ZooMember {
	t.Helper()
	reg := InProcessRegistry(t)
	rp := proxyTo(reg)
	gate := &anonTokens{realmPath: "/v2/token", challenge: func(host, repo string) string {
		return fmt.Sprintf(`Bearer realm="http://%s/v2/token",service=%q,scope="repository:%s:pull"`, host, host, repo)
	}}
	regional := serveHandler(t, gate.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, "/v2/"+K8sRegistryPrefix+"/")
		if !ok {
			http.Error(w, `{"errors":[{"code":"NAME_UNKNOWN","message":"not found"}]}`, http.StatusNotFound)
			return
		}
		r.URL.Path = "/v2/" + rest
		r.URL.RawPath = ""
		rp.ServeHTTP(w, r)
	})))
	m := NewZooMember(t, "registry.k8s.io-like", reg, archeioRedirects(regional))
	m.Other, m.gates = regional, []*anonTokens{gate}
	return m
}

// archeioRedirects is the redirector described on K8sRegistryLike; it
// never reaches the registry behind it.
func archeioRedirects(regional *url.URL) Quirk {
	return func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				http.Error(w, "Only GET and HEAD are allowed.", http.StatusMethodNotAllowed)
				return
			}
			p := r.URL.Path
			switch {
			case p == "/token":
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, `{"token":"0123456789abcdef0123456789abcdef","expires_in":3600}`)
			case p == "/v2/" || p == "/v2":
				w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
				if r.Header.Get("Authorization") != "" {
					return
				}
				w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service=%q`, r.Host, r.Host))
				http.Error(w, "authentication required", http.StatusUnauthorized)
			case p == "/v2/_catalog":
				http.Error(w, "_catalog is not supported", http.StatusNotFound)
			case strings.HasPrefix(p, "/v2/"):
				target := regional.String() + path.Join("/v2/", K8sRegistryPrefix, strings.TrimPrefix(p, "/v2")) + "?rid=0123456789abcdef0123456789abcdef"
				http.Redirect(w, r, target, http.StatusTemporaryRedirect)
			default:
				http.NotFound(w, r)
			}
		})
	}
}
