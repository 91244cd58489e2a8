package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// maxTokenBody bounds a token endpoint's answer read into memory.
const maxTokenBody = 1 << 20

// challenge is one parsed WWW-Authenticate challenge.
type challenge struct {
	scheme string            // lower case: "bearer" or "basic"
	params map[string]string // keys lower case
}

// parseChallenge parses the first challenge of a WWW-Authenticate value:
//
//	Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull"
//
// Quoted values may contain commas and backslash escapes. It never panics on
// hostile input and returns ok=false for anything it cannot read.
func parseChallenge(v string) (challenge, bool) {
	v = strings.TrimSpace(v)
	sp := strings.IndexAny(v, " \t")
	scheme := v
	rest := ""
	if sp >= 0 {
		scheme, rest = v[:sp], v[sp+1:]
	}
	if scheme == "" || strings.ContainsAny(scheme, "=,\"") {
		return challenge{}, false
	}
	c := challenge{scheme: strings.ToLower(scheme), params: map[string]string{}}
	for {
		rest = strings.TrimLeft(rest, " \t,")
		if rest == "" {
			return c, true
		}
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return c, len(c.params) > 0 || strings.TrimSpace(rest) == ""
		}
		key := strings.ToLower(strings.TrimSpace(rest[:eq]))
		rest = strings.TrimLeft(rest[eq+1:], " \t")
		var val string
		if strings.HasPrefix(rest, `"`) {
			var b strings.Builder
			i := 1
			closed := false
			for i < len(rest) {
				ch := rest[i]
				if ch == '\\' && i+1 < len(rest) {
					b.WriteByte(rest[i+1])
					i += 2
					continue
				}
				if ch == '"' {
					closed = true
					i++
					break
				}
				b.WriteByte(ch)
				i++
			}
			if !closed {
				return challenge{}, false
			}
			val, rest = b.String(), rest[i:]
		} else {
			end := strings.IndexByte(rest, ',')
			if end < 0 {
				end = len(rest)
			}
			val, rest = strings.TrimSpace(rest[:end]), rest[end:]
		}
		if _, dup := c.params[key]; !dup {
			c.params[key] = val
		}
	}
}

type token struct {
	value   string
	expires time.Time
}

// tokenCache holds bearer tokens per scope until shortly before they expire.
type tokenCache struct {
	mu     sync.Mutex
	tokens map[string]token
}

func (c *tokenCache) get(scope string, now time.Time) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.tokens[scope]
	if !ok || now.After(t.expires) {
		return "", false
	}
	return t.value, true
}

func (c *tokenCache) put(scope, value string, expires, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tokens == nil {
		c.tokens = map[string]token{}
	}
	// Bound the cache: scopes are per repository and a mirror of the
	// whole of a large registry must not grow without limit.
	if len(c.tokens) >= 4096 {
		for k, t := range c.tokens {
			if now.After(t.expires) {
				delete(c.tokens, k)
			}
		}
		if len(c.tokens) >= 4096 {
			c.tokens = map[string]token{}
		}
	}
	c.tokens[scope] = token{value: value, expires: expires}
}

// authTransport authenticates each hop of an upstream request on its own
// terms: the upstream itself, or a registry host it redirects to (such as a
// redirector sending every request to a regional registry that wants its own
// anonymous token). Configured credentials (username/password, static
// token) go only to trusted hosts: the upstream's own host and AuthHosts. A
// host reached by redirect may still get an anonymous token from a realm on
// that same host. Tokens are cached per host and scope.
type authTransport struct {
	c    *Client
	next http.RoundTripper
}

func (a *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	scope, _ := req.Context().Value(scopeKey{}).(string)
	if scope == "" || req.Body != nil && req.Body != http.NoBody {
		return a.next.RoundTrip(req)
	}
	c := a.c
	trusted := c.authHostAllowed(req.URL) // the upstream itself or an AuthHost
	key := strings.ToLower(req.URL.Host) + " " + scope
	auth := ""
	if tok, ok := c.tokens.get(key, c.tokenClock()); ok {
		auth = "Bearer " + tok
	} else if trusted && c.token != "" {
		auth = "Bearer " + c.token
	}
	resp, err := a.send(req, auth)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	ch, ok := parseChallenge(resp.Header.Get("WWW-Authenticate"))
	if !ok {
		return resp, nil
	}
	switch {
	case ch.scheme == "bearer":
		tok, err := c.fetchToken(req.Context(), req.URL, ch, scope, trusted)
		if err != nil {
			drain(resp)
			return nil, fmt.Errorf("upstream auth for %s: %w", req.URL.Host, err)
		}
		c.tokens.put(key, tok.value, tok.expires, c.tokenClock())
		auth = "Bearer " + tok.value
	case ch.scheme == "basic" && trusted && c.username != "":
		auth = c.basicAuth()
	default:
		return resp, nil
	}
	drain(resp)
	return a.send(req, auth)
}

// send passes a copy of req with auth (if any) to the next round tripper:
// a RoundTripper must not change the request it was given.
func (a *authTransport) send(req *http.Request, auth string) (*http.Response, error) {
	if auth == "" {
		return a.next.RoundTrip(req)
	}
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", auth)
	return a.next.RoundTrip(r)
}

func (c *Client) basicAuth() string {
	req := http.Request{Header: http.Header{}}
	req.SetBasicAuth(c.username, c.password)
	return req.Header.Get("Authorization")
}

// fetchToken runs the bearer-token flow for a request to target against
// the realm of ch. For a trusted target the realm must be on a trusted
// host, and gets the configured credentials; for any other target (a host
// the upstream redirected to) only a realm on that very host is used, and
// anonymously. Credentials, and even an anonymous request, never go
// anywhere else.
func (c *Client) fetchToken(ctx context.Context, target *url.URL, ch challenge, scope string, trusted bool) (token, error) {
	realm, err := url.Parse(ch.params["realm"])
	if err != nil || realm.Host == "" || (realm.Scheme != "https" && realm.Scheme != "http") || realm.User != nil {
		return token{}, fmt.Errorf("upstream %s: unusable token realm", c.host)
	}
	switch {
	case trusted && !c.authHostAllowed(realm):
		return token{}, fmt.Errorf("upstream %s: token realm host %q is not allowed (configure it as an auth host)", c.host, realm.Host)
	case !trusted && (!strings.EqualFold(realm.Host, target.Host) || realm.Scheme != "https" && realm.Scheme != target.Scheme):
		return token{}, fmt.Errorf("upstream %s: redirect host %q names a token realm on another host %q", c.host, target.Host, realm.Host)
	}
	// An auth host is configured, but its address is not: the realm is
	// dialed under the same policy as everything else (dial.go).
	if err := c.policy.allowedURL(realm); err != nil {
		return token{}, fmt.Errorf("upstream %s: token realm: %w", c.host, err)
	}
	if s := ch.params["scope"]; s != "" {
		scope = s
	}
	q := realm.Query()
	if s := ch.params["service"]; s != "" {
		q.Set("service", s)
	}
	q.Set("scope", scope)
	realm.RawQuery = q.Encode()

	ctx, cancel := context.WithTimeout(ctx, c.timeouts.token)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, realm.String(), nil)
	if err != nil {
		return token{}, err
	}
	if trusted && c.username != "" {
		req.SetBasicAuth(c.username, c.password)
	}
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := c.tokenClient.Do(req)
	if err != nil {
		return token{}, fmt.Errorf("token request: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return token{}, fmt.Errorf("token endpoint answered %d", resp.StatusCode)
	}
	body, err := readBounded(resp.Body, maxTokenBody)
	if err != nil {
		return token{}, fmt.Errorf("token response: %w", err)
	}
	var tr struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tr); err != nil {
		return token{}, fmt.Errorf("token response: %w", err)
	}
	tok := tr.Token
	if tok == "" {
		tok = tr.AccessToken
	}
	if tok == "" {
		return token{}, fmt.Errorf("token response has no token")
	}
	ttl := time.Duration(tr.ExpiresIn) * time.Second
	if ttl < 60*time.Second {
		ttl = 60 * time.Second // the spec's default lifetime
	}
	// Renew a little early so a token never expires between check and use.
	return token{value: tok, expires: c.tokenClock().Add(ttl - 10*time.Second)}, nil
}

// authHostAllowed reports whether a host may receive the configured
// credentials: the upstream's own host and the configured AuthHosts, over
// https (or plain http when the upstream itself is plain http).
func (c *Client) authHostAllowed(realm *url.URL) bool {
	// Never downgrade credentials to plain http, not even on the
	// upstream's own host: an https upstream whose challenge names
	// http://<same host>/token would get the password in cleartext.
	if realm.Scheme != "https" && !strings.EqualFold(c.base.Scheme, "http") {
		return false
	}
	if strings.EqualFold(realm.Host, c.base.Host) {
		return true
	}
	for _, h := range c.authHosts {
		if strings.EqualFold(realm.Host, h) {
			return true
		}
	}
	return false
}
