package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// StandIn is a zoo member: a registry stand-in whose storage is a real
// registry (Backing) and whose quirks are a thin http.Handler layer in front
// (Front, the URL a mirror is configured with).
type StandIn struct {
	Front, Backing *url.URL
	// Other is a second host the member sends clients to (a redirect
	// target, a blob CDN), nil when it has none.
	Other *url.URL
	gates []*anonTokens
}

// ForeignAuth returns every Authorization header the member's token
// endpoints and token-gated hosts received other than tokens they issued
// themselves: what a mirror sent of its own credentials.
func (s *StandIn) ForeignAuth() []string {
	var out []string
	for _, g := range s.gates {
		g.mu.Lock()
		out = append(out, g.foreign...)
		g.mu.Unlock()
	}
	return out
}

// Issued is how many tokens the member's token endpoints handed out: zero
// for a member without tokens, or when nothing asked for one.
func (s *StandIn) Issued() int {
	n := 0
	for _, g := range s.gates {
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

// anonTokens is the anonymous side of the distribution token flow as
// public registries run it: every /v2/<name>/... request without a token
// it issued gets 401 and a Bearer challenge whose realm is on the request's
// own host, and the realm hands out a pull token to anyone. It records any
// other Authorization header it sees (a mirror's credentials have no
// business here).
type anonTokens struct {
	realmPath string                         // e.g. /token
	challenge func(host, repo string) string // the WWW-Authenticate value
	// gate decides which requests need a token (nil: all /v2/<name>/...).
	gate func(r *http.Request) bool

	mu      sync.Mutex
	tokens  map[string]bool
	foreign []string
}

func (a *anonTokens) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		tok, bearer := strings.CutPrefix(auth, "Bearer ")
		a.mu.Lock()
		if a.tokens == nil {
			a.tokens = map[string]bool{}
		}
		valid := bearer && a.tokens[tok]
		if auth != "" && !valid {
			a.foreign = append(a.foreign, auth)
		}
		a.mu.Unlock()
		if r.URL.Path == a.realmPath {
			issueToken(w, &a.mu, a.tokens)
			return
		}
		repo := repoOf(r.URL.Path)
		if repo == "" || (a.gate != nil && !a.gate(r)) {
			next.ServeHTTP(w, r)
			return
		}
		if valid {
			r.Header.Del("Authorization")
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", a.challenge(r.Host, repo))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		if r.Method != http.MethodHead {
			io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		}
	})
}

// issueToken answers a token request with a fresh random token, valid for
// 300 s, and remembers it in tokens.
func issueToken(w http.ResponseWriter, mu *sync.Mutex, tokens map[string]bool) {
	b := make([]byte, 16)
	rand.Read(b)
	tok := hex.EncodeToString(b)
	mu.Lock()
	tokens[tok] = true
	mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"token":%q,"expires_in":300}`, tok)
}
