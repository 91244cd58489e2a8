package testenv

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// A ZooMember stands in for a well-known registry in the ways that matter
// to a mirror: a real registry for storage (Reg, where tests seed content),
// a thin layer of that registry's quirks in front of it, and the counting,
// fault-injecting Upstream in front of that (Front, what the mirror is
// configured with). Each quirk cites, beside its code, where the real
// behaviour is documented or reported.
//
// Every member is built the same way: a constructor named after the
// registry (DockerHubLike, ArtifactoryLike, QuayLike, GHCRLike,
// ECRPublicLike, K8sRegistryLike), in a file named after it, that calls
// NewZooMember with the member's quirks.
type ZooMember struct {
	Name  string
	Front *Upstream
	Reg   *url.URL
	// Other is a second host the member sends clients to (a redirect
	// target, a blob CDN), nil when it has none. It is not behind Front:
	// requests to it are not counted.
	Other *url.URL
	// Realm is the host of the member's token realm when it is neither
	// the registry's host nor Other (Docker Hub-like only, else nil): a
	// mirror must be configured to trust it (UpstreamConfig.AuthHosts).
	// Like Other, it is not behind Front.
	Realm *url.URL
	// Schema1 scripts the member's signed schema 1 tags (quay-like only,
	// else nil).
	Schema1 *Schema1Tags

	gates []*anonTokens
	// realmHits and otherHits count requests to Realm and Other, for
	// members that count them (else nil).
	realmHits, otherHits *atomic.Int64
	// cdn is the member's signed-URL CDN (Docker Hub-like only, else nil).
	cdn *signedCDN
}

// AuthHosts is what a mirror must list in UpstreamConfig.AuthHosts for
// this member: Realm's host, or nothing.
func (m *ZooMember) AuthHosts() []string {
	if m.Realm == nil {
		return nil
	}
	return []string{m.Realm.Host}
}

// RealmRequests counts the requests Realm received (0 for a member
// without a counted realm host).
func (m *ZooMember) RealmRequests() int64 { return load(m.realmHits) }

// OtherRequests counts the requests Other received, for members that
// count them (Docker Hub-like), else 0.
func (m *ZooMember) OtherRequests() int64 { return load(m.otherHits) }

func load(n *atomic.Int64) int64 {
	if n == nil {
		return 0
	}
	return n.Load()
}

// counted wraps h with a request counter.
func counted(h http.Handler) (http.Handler, *atomic.Int64) {
	n := new(atomic.Int64)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	}), n
}

// headerLog records header values a host received.
type headerLog struct {
	mu   sync.Mutex
	seen []string
}

func (l *headerLog) add(v string) {
	l.mu.Lock()
	l.seen = append(l.seen, v)
	l.mu.Unlock()
}

func (l *headerLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.seen...)
}

// A Quirk wraps the handler in front of a member's registry (next reaches
// the registry, or the quirks after this one) with one behaviour of the
// real registry.
type Quirk func(next http.Handler) http.Handler

// NewZooMember serves reg behind quirks (the first one sees requests
// first) and the counting Upstream wrapper. reg nil means a fresh
// in-process registry.
func NewZooMember(t testing.TB, name string, reg *url.URL, quirks ...Quirk) *ZooMember {
	t.Helper()
	if reg == nil {
		reg = InProcessRegistry(t)
	}
	var h http.Handler = proxyTo(reg)
	for i := len(quirks) - 1; i >= 0; i-- {
		h = quirks[i](h)
	}
	return &ZooMember{Name: name, Front: NewUpstream(t, serveHandler(t, h)), Reg: reg}
}

// ForeignAuth returns every Authorization header the member's token
// endpoints and token-gated hosts received other than tokens they issued
// themselves (what a mirror sent of its own credentials), and any a
// signed-URL CDN received at all.
func (m *ZooMember) ForeignAuth() []string {
	var out []string
	for _, g := range m.gates {
		g.mu.Lock()
		out = append(out, g.foreign...)
		g.mu.Unlock()
	}
	if m.cdn != nil {
		out = append(out, m.cdn.auth.all()...)
	}
	return out
}

// Issued is how many tokens the member's token endpoints handed out: zero
// for a member without tokens, or when nothing asked for one.
func (m *ZooMember) Issued() int {
	n := 0
	for _, g := range m.gates {
		g.mu.Lock()
		n += len(g.tokens)
		g.mu.Unlock()
	}
	return n
}

// serveHandler starts h on 127.0.0.1 for the test's lifetime.
func serveHandler(t testing.TB, h http.Handler) *url.URL {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return u
}

// proxyTo is a reverse proxy to a backing registry.
func proxyTo(target *url.URL) *httputil.ReverseProxy {
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ErrorLog = log.New(io.Discard, "", 0)
	return rp
}

// blobsRedirectTo answers every blob GET and HEAD by digest with a 307 to
// the same path on target plus query (a storage host or CDN in front of
// the same registry), as registries that keep blobs in object storage do.
func blobsRedirectTo(target *url.URL, query string) Quirk {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.Contains(r.URL.Path, "/blobs/sha256:") {
				next.ServeHTTP(w, r)
				return
			}
			w.Header().Set("Location", target.String()+r.URL.Path+query)
			w.WriteHeader(http.StatusTemporaryRedirect)
		})
	}
}

// repoOf is the repository in a /v2/<name>/<kind>/... path, or "".
func repoOf(path string) string {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return ""
	}
	for _, sep := range []string{"/manifests/", "/blobs/", "/tags/", "/referrers/"} {
		if i := strings.LastIndex(rest, sep); i > 0 {
			return rest[:i]
		}
	}
	return ""
}

// manifestRef splits /v2/<name>/manifests/<ref> into name and ref.
func manifestRef(path string) (name, ref string, ok bool) {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return "", "", false
	}
	i := strings.LastIndex(rest, "/manifests/")
	if i <= 0 {
		return "", "", false
	}
	return rest[:i], rest[i+len("/manifests/"):], true
}

// isDigest tells a digest reference from a tag (tags cannot hold ':').
func isDigest(ref string) bool { return strings.Contains(ref, ":") }

// writeRegistryError answers with a distribution-style error body.
func writeRegistryError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`+"\n", code, message)
}

// innerGet GETs path from next (the registry behind a quirk) and returns
// the recorded answer.
func innerGet(next http.Handler, r *http.Request, path string) *httptest.ResponseRecorder {
	req := r.Clone(r.Context())
	req.Method = http.MethodGet
	req.URL.Path, req.URL.RawPath = path, ""
	req.Header.Del("If-None-Match")
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, req)
	return rec
}

// copyRecorded relays a recorded answer, without the body for HEAD.
// Headers already set on w win over recorded ones.
func copyRecorded(w http.ResponseWriter, r *http.Request, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		if _, set := w.Header()[k]; !set {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(rec.Code)
	if r.Method != http.MethodHead {
		w.Write(rec.Body.Bytes())
	}
}
