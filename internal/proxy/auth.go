package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
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

func (c *tokenCache) put(scope, value string, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tokens == nil {
		c.tokens = map[string]token{}
	}
	// Bound the cache: scopes are per repository and a mirror of the
	// whole of a large registry must not grow without limit.
	if len(c.tokens) >= 4096 {
		now := time.Now()
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

// fetchToken runs the bearer-token flow against the realm of ch. The realm
// must be on a host this upstream is configured to trust: credentials, and
// even an anonymous request, never go anywhere else.
func (u *Upstream) fetchToken(ctx context.Context, ch challenge, scope string) (string, error) {
	realm, err := url.Parse(ch.params["realm"])
	if err != nil || realm.Host == "" || (realm.Scheme != "https" && realm.Scheme != "http") {
		return "", fmt.Errorf("upstream %s: unusable token realm", u.host)
	}
	if !u.authHostAllowed(realm) {
		return "", fmt.Errorf("upstream %s: token realm host %q is not allowed (configure it as an auth host)", u.host, realm.Host)
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

	ctx, cancel := context.WithTimeout(ctx, u.timeouts.token)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, realm.String(), nil)
	if err != nil {
		return "", err
	}
	if u.username != "" {
		req.SetBasicAuth(u.username, u.password)
	}
	resp, err := u.tokenClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("token request: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenBody+1))
	if err != nil {
		return "", fmt.Errorf("token response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("token endpoint answered %d", resp.StatusCode)
	}
	if len(body) > maxTokenBody {
		return "", fmt.Errorf("token response larger than %d bytes", maxTokenBody)
	}
	var tr struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tr); err != nil {
		return "", fmt.Errorf("token response: %w", err)
	}
	tok := tr.Token
	if tok == "" {
		tok = tr.AccessToken
	}
	if tok == "" {
		return "", fmt.Errorf("token response has no token")
	}
	ttl := time.Duration(tr.ExpiresIn) * time.Second
	if ttl < 60*time.Second {
		ttl = 60 * time.Second // the spec's default lifetime
	}
	// Renew a little early so a token never expires between check and use.
	u.tokens.put(scope, tok, time.Now().Add(ttl-10*time.Second))
	return tok, nil
}

func (u *Upstream) authHostAllowed(realm *url.URL) bool {
	if strings.EqualFold(realm.Host, u.base.Host) {
		return true
	}
	if realm.Scheme != "https" && !strings.EqualFold(u.base.Scheme, "http") {
		return false // never downgrade credentials to plain http
	}
	for _, h := range u.authHosts {
		if strings.EqualFold(realm.Host, h) {
			return true
		}
	}
	return false
}
