package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"slices"
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
	// scoped: a token is good only for the repositories its request named
	// in scope=repository:<name>:pull; any other gets 401 with
	// error="insufficient_scope" in the challenge, as distribution's token
	// auth answers (docs.docker.com/reference/api/registry/auth/, "Requesting
	// a token"; distribution registry/auth/token/accesscontroller.go).
	scoped bool

	mu      sync.Mutex
	tokens  map[string]bool
	scopes  map[string][]string // token → the scope parameters it was issued for (scoped only)
	foreign []string
}

// check returns the token a issued that r carries, or "", recording any
// other Authorization header.
func (a *anonTokens) check(r *http.Request) string {
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
	if !valid {
		return ""
	}
	return tok
}

// grants reports whether tok may pull repo: always, unless a is scoped.
func (a *anonTokens) grants(tok, repo string) bool {
	if !a.scoped || repo == "" {
		return true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, param := range a.scopes[tok] {
		for _, sc := range strings.Fields(param) {
			name, actions, ok := strings.Cut(strings.TrimPrefix(sc, "repository:"), ":")
			if ok && strings.HasPrefix(sc, "repository:") && name == repo && slices.Contains(strings.Split(actions, ","), "pull") {
				return true
			}
		}
	}
	return false
}

// realm serves the token endpoint alone, for a realm on its own host.
func (a *anonTokens) realm() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.check(r)
		if r.URL.Path != a.realmPath {
			http.NotFound(w, r)
			return
		}
		tok := issueToken(w, &a.mu, a.tokens)
		if a.scoped {
			a.mu.Lock()
			if a.scopes == nil {
				a.scopes = map[string][]string{}
			}
			a.scopes[tok] = r.URL.Query()["scope"]
			a.mu.Unlock()
		}
	})
}

func (a *anonTokens) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := a.check(r)
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
		challenge := a.challenge(r.Host, repo)
		if tok != "" && a.grants(tok, repo) {
			r.Header.Del("Authorization")
			next.ServeHTTP(w, r)
			return
		} else if tok != "" {
			challenge += `,error="insufficient_scope"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		if r.Method != http.MethodHead {
			io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		}
	})
}

// issueToken answers a token request with a fresh random token, valid for
// 300 s, remembers it in tokens and returns it.
func issueToken(w http.ResponseWriter, mu *sync.Mutex, tokens map[string]bool) string {
	b := make([]byte, 16)
	rand.Read(b)
	tok := hex.EncodeToString(b)
	mu.Lock()
	tokens[tok] = true
	mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"token":%q,"expires_in":300}`, tok)
	return tok
}
