package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pullthrough/pullthrough/internal/dockerhub"
)

// UpstreamConfig describes one registry the mirror pulls from.
type UpstreamConfig struct {
	// Host is the registry's name as clients know it, e.g. docker.io. It
	// scopes tag records in the store.
	Host string
	// URL is the registry's base URL, e.g. https://registry-1.docker.io.
	URL string
	// Username and Password are optional credentials, sent only to the
	// upstream itself and to allowed token realms.
	Username, Password string
	// AuthHosts are extra hosts whose token realms are honoured (the
	// upstream's own host always is).
	AuthHosts []string
	// Token is an optional static bearer token sent to the upstream.
	Token string
	// Allow and Deny are repository globs ("library/*", "myorg/**"): "*"
	// matches within one path component, "**" across components. A
	// repository matching Deny, or not matching a non-empty Allow, is
	// refused without an upstream request.
	Allow, Deny []string
	// Transport is the round tripper for all upstream traffic; nil means a
	// dedicated transport with sane timeouts.
	Transport http.RoundTripper
}

// Upstream is a registry client limited to what a pull-through cache needs:
// GET and HEAD of manifests, blobs and tag lists, with bearer-token auth.
type Upstream struct {
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
	retryAt            atomic.Int64                            // unix nanos before which we do not call upstream
	redirectsBlobs     atomic.Bool                             // blob GETs were seen to redirect to another host (a CDN)
	fillRate           fillRate                                // measured fill throughput (fillrate.go)
	now                func() time.Time                        // the clock of token expiry (auth.go); nil: time.Now
}

// clock is the time token expiry is judged by (tests replace it).
func (u *Upstream) clock() time.Time {
	if u.now != nil {
		return u.now()
	}
	return time.Now()
}

// DockerHubHost and DockerHubURL name the default upstream (see package
// dockerhub, which owns Docker Hub's names).
const (
	DockerHubHost = dockerhub.Host
	DockerHubURL  = dockerhub.URL
)

// NewUpstream validates cfg (UpstreamConfig.Validate) and builds the
// client.
func NewUpstream(cfg UpstreamConfig) (*Upstream, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("upstream %s: %w", cmp.Or(cfg.Host, redactConfigURL(cfg.URL)), err)
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
	u := &Upstream{
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
	u.timeouts.token = 30 * time.Second
	u.timeouts.metadata = 60 * time.Second
	if u.dockerHub && len(u.authHosts) == 0 {
		u.authHosts = []string{dockerhub.AuthHost}
	}
	rt := cfg.Transport
	if rt == nil {
		rt = newTransport()
	}
	// Layers, per hop of a request (the upstream, or a host it redirects
	// to): auth on that host's own terms, then retries of transient
	// failures, then statistics of every attempt. Redirects are followed
	// above them all, by the client.
	authed := &authTransport{u: u, next: retryTransport{next: statsTransport{next: rt}}}
	lastResponse := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	u.client = &http.Client{Transport: authed, CheckRedirect: u.checkRedirect}
	u.noRedirect = &http.Client{Transport: authed, CheckRedirect: lastResponse}
	u.tokenClient = &http.Client{Transport: rt, CheckRedirect: lastResponse}
	return u, nil
}

// Host is the registry name the upstream serves, e.g. docker.io.
func (u *Upstream) Host() string { return u.host }

func newTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   16,
	}
}

// checkRedirect follows blob redirects (registries send blobs to a CDN or
// object store) but never carries credentials to another host.
func (u *Upstream) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("upstream: too many redirects")
	}
	if req.URL.Scheme != "https" && !(req.URL.Scheme == "http" && u.base.Scheme == "http") {
		return fmt.Errorf("upstream: refusing redirect to %s URL", req.URL.Scheme)
	}
	if !strings.EqualFold(req.URL.Host, u.base.Host) {
		req.Header.Del("Authorization")
		if strings.Contains(via[0].URL.Path, "/blobs/") {
			u.redirectsBlobs.Store(true)
		}
	}
	return nil
}

// canonicalName maps a client-facing repository name to the upstream's:
// Docker Hub keeps official images under library/, so "alpine" and
// "library/alpine" are one repository (and one cache entry).
func (u *Upstream) canonicalName(name string) string {
	if u.dockerHub && !strings.Contains(name, "/") {
		return "library/" + name
	}
	return name
}

// allowed applies the repository allow and deny lists.
func (u *Upstream) allowed(name string) bool {
	for _, g := range u.deny {
		if g.MatchString(name) {
			return false
		}
	}
	if len(u.allow) == 0 {
		return true
	}
	for _, g := range u.allow {
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

// do sends an idempotent request for repository name. Authentication
// (bearer tokens, basic auth, per host) happens below, in authTransport.
// The caller closes the body.
func (u *Upstream) do(ctx context.Context, method, name, rest string, header http.Header) (*http.Response, error) {
	target := u.base.JoinPath("v2", name, rest)
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		target = u.base.JoinPath("v2", name, rest[:i])
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
	if _, ok := ctx.Value(noRedirectKey{}).(bool); ok {
		return u.noRedirect.Do(req)
	}
	return u.client.Do(req)
}

// upstreamError turns an upstream answer that is not a success into the error
// the client sees. The upstream's own auth errors are never passed through:
// the client did not talk to the upstream and cannot fix them. now is the
// mirror's clock, for a Retry-After given as a date.
func upstreamError(resp *http.Response, notFound *Error, now time.Time) *Error {
	cause := fmt.Errorf("upstream answered %d", resp.StatusCode)
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return notFound.With("", cause)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return ErrDenied.With("upstream denied access: the repository does not exist or needs credentials the mirror does not have", cause)
	case resp.StatusCode == http.StatusTooManyRequests:
		return ErrTooManyRequests.With("upstream rate limit reached and the mirror has no cached copy", cause).
			After(retryAfter(resp.Header.Get("Retry-After"), now))
	default:
		return ErrUnavailable.With("upstream registry unavailable", cause)
	}
}

// backoff remembers an upstream's Retry-After so the mirror stops asking
// until then and serves from cache instead.
func (u *Upstream) backingOff(now time.Time) bool {
	return now.UnixNano() < u.retryAt.Load()
}

func (u *Upstream) noteFailure(resp *http.Response, now time.Time) {
	if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
		return
	}
	d := retryAfter(resp.Header.Get("Retry-After"), now)
	if d <= 0 {
		return
	}
	if d > 10*time.Minute {
		d = 10 * time.Minute
	}
	u.retryAt.Store(now.Add(d).UnixNano())
}

func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return t.Sub(now)
	}
	return 0
}

type noRedirectKey struct{}

// readBounded reads all of r if it is at most limit bytes; a longer body is
// an error, found without reading more than limit+1 bytes.
func readBounded(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("body larger than %d bytes", limit)
	}
	return b, nil
}

// blobLocation asks the upstream for a blob without following its redirect
// and returns the redirect target if it is a URL on another host that needs
// no credentials of ours (a signed CDN or object-store URL), else "".
func (u *Upstream) blobLocation(ctx context.Context, name string, d fmt.Stringer) (string, error) {
	ctx = context.WithValue(ctx, noRedirectKey{}, true)
	resp, err := u.do(ctx, http.MethodGet, name, "blobs/"+d.String(), nil)
	if err != nil {
		return "", err
	}
	resp.Body.Close() // a 200 here means the upstream serves blobs itself
	switch resp.StatusCode {
	case http.StatusTemporaryRedirect, http.StatusFound, http.StatusSeeOther, http.StatusMovedPermanently, http.StatusPermanentRedirect:
	default:
		return "", nil
	}
	loc, err := resp.Location()
	plainOK := loc != nil && loc.Scheme == "http" && u.base.Scheme == "http" // no downgrade
	if err != nil || loc.Scheme != "https" && !plainOK || strings.EqualFold(loc.Host, u.base.Host) {
		return "", nil
	}
	// A redirect to another registry's API (a registry.k8s.io-like
	// redirector's regional host) is no signed URL: that host wants its own
	// token, which the client would not have.
	if strings.HasPrefix(loc.Path, "/v2/") && strings.Contains(loc.Path, "/blobs/") {
		return "", nil
	}
	return loc.String(), nil
}
