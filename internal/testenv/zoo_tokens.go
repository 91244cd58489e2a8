package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

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
	// gateBase makes /v2/ itself answer 401 without a token (challenge
	// without a scope), as Docker Hub does.
	gateBase bool
	// realmElsewhere: the realm is served by realm() on another host, not
	// by wrap on the registry's.
	realmElsewhere bool

	mu      sync.Mutex
	tokens  map[string]bool
	foreign []string
}

// check reports whether r carries a token a issued, recording any other
// Authorization header.
func (a *anonTokens) check(r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	tok, bearer := strings.CutPrefix(auth, "Bearer ")
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tokens == nil {
		a.tokens = map[string]bool{}
	}
	valid := bearer && a.tokens[tok]
	if auth != "" && !valid {
		a.foreign = append(a.foreign, auth)
	}
	return valid
}

// realm serves the token endpoint alone, for a realm on its own host.
func (a *anonTokens) realm() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.check(r)
		if r.URL.Path != a.realmPath {
			http.NotFound(w, r)
			return
		}
		issueToken(w, &a.mu, a.tokens)
	})
}

func (a *anonTokens) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		valid := a.check(r)
		if r.URL.Path == a.realmPath && !a.realmElsewhere {
			issueToken(w, &a.mu, a.tokens)
			return
		}
		repo := repoOf(r.URL.Path)
		base := a.gateBase && (r.URL.Path == "/v2/" || r.URL.Path == "/v2")
		if !base && (repo == "" || (a.gate != nil && !a.gate(r))) {
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
