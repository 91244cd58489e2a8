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
	"testing"
)

// A ZooMember stands in for a well-known registry in the ways that matter
// to a mirror: a real registry for storage (Reg, where tests seed content),
// a thin layer of that registry's quirks in front of it, and the counting,
// fault-injecting Upstream in front of that (Front, what the mirror is
// configured with). Each quirk cites, beside its code, where the real
// behaviour is documented or reported.
//
// Members are built by one constructor each (DockerHubLike,
// ArtifactoryLike, QuayLike, ...), in a file named after the member.
type ZooMember struct {
	Name  string
	Front *Upstream
	Reg   *url.URL
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
	rp := httputil.NewSingleHostReverseProxy(reg)
	rp.ErrorLog = log.New(io.Discard, "", 0)
	var h http.Handler = rp
	for i := len(quirks) - 1; i >= 0; i-- {
		h = quirks[i](h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return &ZooMember{Name: name, Front: NewUpstream(t, u), Reg: reg}
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
