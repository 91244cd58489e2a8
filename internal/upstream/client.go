// Package upstream is the mirror's registry client: the read side of the
// OCI distribution API (GET and HEAD of manifests, blobs, tag lists and
// referrers) against one upstream registry, with bearer-token auth per
// host, retries of transient failures, and the upstream's Retry-After
// honoured for every caller. Each wire call lives in fetch.go and ends in
// one status check (checkStatus); failures are this package's own errors
// (errors.go), which the serving side maps to OCI errors at its edge.
//
// It is not a cache and knows nothing of the store, of clients or of HTTP
// responses to them.
package upstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pullthrough/pullthrough/internal/dockerhub"
)

// Client is a registry client limited to what a pull-through cache needs.
type Client struct {
	host               string
	base               *url.URL
	username, password string
	authHosts          []string
	token              string
	allow, deny        []*regexp.Regexp
	client             *http.Client // manifests, blobs: follows safe redirects
	noRedirect         *http.Client // blob locations: the redirect itself is the answer
	tokenClient        *http.Client // token realms: no redirects, no auth layer
	tokens             tokenCache
	dockerHub          bool
	timeouts           struct{ token, metadata time.Duration } // metadata: manifests, blob HEADs, tag lists, referrers
	backoff            backoff
	attempt            Timeouts // the deadlines of each attempt (outage.go)
	outages            outages
	facts              hostFacts
	policy             *dialPolicy // where connections, redirects and realms may go (dial.go)
	observe            atomic.Pointer[Observer]
	now                atomic.Pointer[func() time.Time] // the mirror's clock (back-off, facts); nil: time.Now
	tokenNow           func() time.Time                 // the clock of token expiry (auth.go); nil: time.Now
}

// Observer is told of every attempt of every upstream request (each hop
// of a redirect, each retry): the answer, or the error when there was
// none. ctx is the caller's.
type Observer func(ctx context.Context, resp *http.Response, err error)

// New validates cfg (Config.Validate) and builds the client.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("upstream %s: %w", cmp.Or(cfg.Host, RedactURL(cfg.URL)), err)
	}
	base, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", cfg.Host, err)
	}
	allow, err := compileGlobs(cfg.Allow)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", cfg.Host, err)
	}
	deny, err := compileGlobs(cfg.Deny)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", cfg.Host, err)
	}
	host := cfg.Host
	if host == "" {
		host = base.Host
	}
	c := &Client{
		host:      host,
		base:      base,
		username:  cfg.Username,
		password:  cfg.Password,
		authHosts: cfg.AuthHosts,
		token:     cfg.Token,
		allow:     allow,
		deny:      deny,
		dockerHub: dockerhub.Is(base.Host) || dockerhub.Is(host),
	}
	c.timeouts.token = 30 * time.Second
	c.timeouts.metadata = 60 * time.Second
	if c.dockerHub && len(c.authHosts) == 0 {
		c.authHosts = []string{dockerhub.AuthHost}
	}
	c.policy = newDialPolicy(base)
	rt := cfg.Transport
	if rt == nil {
		rt = newTransport()
	}
	rt = c.policy.withPolicy(rt)
	c.attempt = cfg.Timeouts.withDefaults()
	timed := deadlineTransport{connect: c.attempt.Connect, firstByte: c.attempt.FirstByte, next: rt}
	// Layers, per hop of a request (the upstream, or a host it redirects
	// to): back-off first (a host that asked for a pause is not asked),
	// then auth on that host's own terms, then the outage memory (a host
	// that just hung or refused connections is not asked), then retries
	// of transient failures, then the observer of every attempt, then each
	// attempt's deadlines. Redirects are followed above them all, by the
	// client. Token realms have the outage memory and deadlines only.
	authed := &backoffTransport{c: c, next: &authTransport{c: c, next: outageTransport{c: c, next: retryTransport{next: observeTransport{c: c, next: timed}}}}}
	lastResponse := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.client = &http.Client{Transport: authed, CheckRedirect: c.checkRedirect}
	c.noRedirect = &http.Client{Transport: authed, CheckRedirect: lastResponse}
	c.tokenClient = &http.Client{Transport: outageTransport{c: c, next: timed}, CheckRedirect: lastResponse}
	return c, nil
}

// Host is the registry name the upstream serves, e.g. docker.io.
func (c *Client) Host() string { return c.host }

// Observe sets the observer of upstream attempts (nil: none). It may be
// called at any time; requests in flight see either observer.
func (c *Client) Observe(fn Observer) {
	if fn == nil {
		c.observe.Store(nil)
		return
	}
	c.observe.Store(&fn)
}

// SetClock sets the clock back-off and learnt facts are judged by (nil:
// the real one): the mirror's own, so that a test moving it moves them.
func (c *Client) SetClock(now func() time.Time) {
	if now == nil {
		c.now.Store(nil)
		return
	}
	c.now.Store(&now)
}

// SetTokenClock sets the clock bearer-token expiry is judged by (nil: the
// real one). Call it before the client is used.
func (c *Client) SetTokenClock(now func() time.Time) { c.tokenNow = now }

func (c *Client) clock() time.Time {
	if now := c.now.Load(); now != nil {
		return (*now)()
	}
	return time.Now()
}

func (c *Client) tokenClock() time.Time {
	if c.tokenNow != nil {
		return c.tokenNow()
	}
	return time.Now()
}

func newTransport() *http.Transport {
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		// The dialer is the dial policy's (dialPolicy.withPolicy).
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   16,
	}
}

// checkRedirect follows blob redirects (registries send blobs to a CDN or
// object store) but never carries credentials to another host. A blob GET
// that leaves the upstream's host is learnt as a CDN (Facts.CDN).
func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("upstream: too many redirects")
	}
	if req.URL.Scheme != "https" && !(req.URL.Scheme == "http" && c.base.Scheme == "http") {
		return fmt.Errorf("upstream: refusing redirect to %s URL: %w", req.URL.Scheme, ErrForbiddenAddress)
	}
	if err := c.policy.allowedURL(req.URL); err != nil {
		return fmt.Errorf("upstream: refusing redirect: %w", err)
	}
	if !strings.EqualFold(req.URL.Host, c.base.Host) {
		req.Header.Del("Authorization")
		if strings.Contains(via[0].URL.Path, "/blobs/") {
			c.facts.cdn.Store(true)
		}
	}
	return nil
}

// CanonicalName maps a client-facing repository name to the upstream's:
// Docker Hub keeps official images under library/, so "alpine" and
// "library/alpine" are one repository (and one cache entry).
func (c *Client) CanonicalName(name string) string {
	if c.dockerHub && !strings.Contains(name, "/") {
		return "library/" + name
	}
	return name
}

// Allowed applies the repository allow and deny lists (Config.Allow,
// Config.Deny) to a canonical name.
func (c *Client) Allowed(name string) bool {
	for _, g := range c.deny {
		if g.MatchString(name) {
			return false
		}
	}
	if len(c.allow) == 0 {
		return true
	}
	for _, g := range c.allow {
		if g.MatchString(name) {
			return true
		}
	}
	return false
}

// compileGlobs turns repository globs into anchored regular expressions:
// "**" matches anything, "*" anything but "/", "?" one character but "/".
func compileGlobs(globs []string) ([]*regexp.Regexp, error) {
	var out []*regexp.Regexp
	for _, g := range globs {
		g = strings.TrimSpace(g)
		if g == "" {
			continue
		}
		var b strings.Builder
		b.WriteString("^")
		for i := 0; i < len(g); i++ {
			switch {
			case strings.HasPrefix(g[i:], "**"):
				b.WriteString(".*")
				i++
			case g[i] == '*':
				b.WriteString("[^/]*")
			case g[i] == '?':
				b.WriteString("[^/]")
			default:
				b.WriteString(regexp.QuoteMeta(g[i : i+1]))
			}
		}
		b.WriteString("$")
		re, err := regexp.Compile(b.String())
		if err != nil {
			return nil, fmt.Errorf("bad repository pattern %q: %w", g, err)
		}
		out = append(out, re)
	}
	return out, nil
}

// scopeKey carries the token scope of an upstream request
// ("repository:<name>:pull") to the auth layer.
type scopeKey struct{}

// do sends an idempotent request for repository name; rest is the path
// after /v2/<name>/, with an optional query. Authentication (bearer
// tokens, basic auth, per host) happens below, in authTransport. With
// follow false a redirect is the answer. The caller closes the body.
func (c *Client) do(ctx context.Context, method, name, rest string, header http.Header, follow bool) (*http.Response, error) {
	target := c.base.JoinPath("v2", name, rest)
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		target = c.base.JoinPath("v2", name, rest[:i])
		target.RawQuery = rest[i+1:]
	}
	ctx = context.WithValue(ctx, scopeKey{}, "repository:"+name+":pull")
	req, err := http.NewRequestWithContext(ctx, method, target.String(), nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "pullthrough")
	// The bytes as sent, never a transfer encoding of them: Go's transport
	// would otherwise ask for gzip and inflate the answer, so the mirror
	// would verify (and store, and spend memory on) bytes the upstream did
	// not send. An upstream that encodes anyway is verified as it sent.
	req.Header.Set("Accept-Encoding", "identity")
	if !follow {
		return c.noRedirect.Do(req)
	}
	return c.client.Do(req)
}
