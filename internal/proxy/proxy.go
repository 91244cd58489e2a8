// Package proxy is the registry protocol and cache policy of pullthrough: an
// http.Handler that serves the read side of the OCI distribution API
// (/v2/...) from a Store, filling it from an upstream registry on a miss.
//
// It knows nothing of AWS: storage comes in through the small Store
// interface and optional abilities (presigned redirects, seekable reads) are
// found by type assertion. It does not implement pushes.
package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/pullthrough/pullthrough/internal/cache"
	"github.com/pullthrough/pullthrough/internal/dockerhub"
	"github.com/pullthrough/pullthrough/internal/fill"
	"github.com/pullthrough/pullthrough/internal/oci"
)

// Config is the cache policy.
type Config struct {
	// ManifestTTL is how long a tag (or a referrers answer) is served from
	// cache before it is revalidated upstream. Zero means
	// DefaultManifestTTL, like the other fields; RevalidateAlways (or any
	// negative value) revalidates on every request.
	ManifestTTL time.Duration
	// PresignTTL is the lifetime of presigned blob URLs.
	PresignTTL time.Duration
	// FillTimeout bounds one blob fill from upstream into the store.
	FillTimeout time.Duration
	// LeaseTTL is how long a fill lease lives without renewal: the time
	// before another instance takes over from a filler that died.
	LeaseTTL time.Duration
	// FillWait bounds how long a request waits for another instance's
	// fill before it is told to retry (keep it under client timeouts).
	FillWait time.Duration
	// MaxManifestSize bounds manifests read into memory.
	MaxManifestSize int64
	// DefaultUpstream is the host of the upstream for requests that name
	// none (no ?ns=, no host path prefix). Empty means the first one.
	DefaultUpstream string
	// LargeBlobPolicy is PolicyWait, PolicyUpstream or PolicyAuto (the
	// default), and LargeBlobSize the threshold PolicyAuto applies.
	LargeBlobPolicy string
	LargeBlobSize   int64
	// MaxBlobSize is the largest blob, in bytes, the mirror fetches and
	// stores (package fill, cap.go): bigger ones get 403 DENIED before any byte is
	// stored, whether the upstream announces the size or sends a body
	// without a length. Zero or less means no cap; the binary defaults it
	// to DefaultMaxBlobSize.
	MaxBlobSize int64
	// BackgroundFill, when set, starts a fill outside the request (in
	// Lambda: the function invoking itself, which then calls RunFill). When
	// nil, fills that outlive a request run in goroutines of this process.
	BackgroundFill func(ctx context.Context, job FillJob) error
	// FillParts is how many ranged GETs a fill of a blob over FillParts ×
	// FillPartSize runs at once when the upstream honours Range
	// (package fill, ranged.go); 1 turns parallel fills off. FillPartSize is the size of one part in bytes. A fill holds at
	// most FillParts × FillPartSize in memory. Zero means
	// DefaultFillParts and DefaultFillPartSize.
	FillParts    int
	FillPartSize int64
	// SpoolDir is where a fill streamed to clients keeps its bytes
	// (package fill, spool.go); "" is the system's temporary directory.
	SpoolDir string
	// MaxFills bounds the blob fills this process runs at once (detached
	// ones included); a fill beyond it gets 503 with Retry-After. Zero
	// means DefaultMaxFills.
	MaxFills int
	// EmbeddedMetrics adds CloudWatch Embedded Metric Format fields to
	// each request's log line (set in Lambda).
	EmbeddedMetrics bool
	// MetricsFunction is the Lambda function's name, a metrics dimension.
	MetricsFunction string
	// Access restricts who may use the mirror. The zero value lets
	// everyone in.
	Access AccessConfig
	// NoContentLength says that Content-Length never reaches clients: a
	// Lambda function URL in RESPONSE_STREAM mode renames it to
	// x-amzn-Remapped-Content-Length and sends every body chunked
	// (cargo-lambda/cargo-lambda#862, aws/aws-lambda-go#577). Manifest
	// answers for tags then carry no Docker-Content-Digest, so clients
	// compute the digest from the body: Docker's registry client
	// (distribution's descriptorFromResponse, dockerd 20.10's tag
	// resolution) rejects a digest without a length, and dockerd then pulls
	// from the upstream itself instead of the mirror. Without the digest it
	// falls back from HEAD to GET and hashes the body, as containerd,
	// go-containerregistry and containers/image do.
	NoContentLength bool
	// FillProgressEvery is how often a fill logs its bytes and rate
	// ("fill progress"); zero means fill.DefaultProgressEvery (15 s).
	FillProgressEvery time.Duration
	// OnRequest, if set, is told of each request's figures once it is
	// answered (the local server's Prometheus metrics). It must not block.
	OnRequest func(RequestStats)
	// OnFillFailure, if set, is told of each fill that failed, by upstream
	// host (the FillFailures metric). It must not block.
	OnFillFailure func(upstream string)
	// DeniedGrace is how long after the upstream last confirmed a tag the
	// cached copy is still served (stale) once the upstream denies access
	// to it (401/403 after the token flow: deleted, taken down, made
	// private). Zero, the default, answers DENIED at once.
	DeniedGrace time.Duration
}

// RevalidateAlways as Config.ManifestTTL asks the upstream about a tag on
// every request (PULLTHROUGH_MANIFEST_TTL=0s).
const RevalidateAlways = cache.RevalidateAlways

// Defaults for zero Config fields.
const (
	DefaultManifestTTL     = 5 * time.Minute
	DefaultPresignTTL      = 15 * time.Minute
	DefaultFillTimeout     = 14 * time.Minute
	DefaultMaxManifestSize = 4 << 20
	DefaultLeaseTTL        = 30 * time.Second
	MinLeaseTTL            = 3 * time.Second
	DefaultFillWait        = 4 * time.Minute
	DefaultLargeBlobSize   = 1 << 30
)

// Proxy is the mirror's http.Handler.
type Proxy struct {
	cfg       Config
	store     Store
	upstreams map[string]*Upstream // by lower-case host
	def       *Upstream
	access    access
	log       *slog.Logger
	exchanges fill.Group[exchange] // manifest and tag exchanges with upstreams
	fills     *fill.Engine         // blob fills
	cache     *cache.Cache         // records, memos and the clock
}

// now is the mirror's clock: the cache's, which tests replace.
func (p *Proxy) now() time.Time { return p.cache.Now() }

// New builds the handler. It fills cfg's zero fields with defaults
// (Config.WithDefaults) and refuses a cfg that Config.Validate rejects,
// with its field errors. upstreams must not be empty, nor name a host
// twice; requests that name no registry go to the one whose host is
// cfg.DefaultUpstream, or the first. A nil logger discards logs.
func New(cfg Config, store Store, upstreams []*Upstream, logger *slog.Logger) (*Proxy, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	byHost, def, err := indexUpstreams(upstreams, cfg.DefaultUpstream)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = slog.New(redactingHandler{logger.Handler()})
	c := cache.New(cache.Policy{ManifestTTL: cfg.ManifestTTL, DeniedGrace: cfg.DeniedGrace, PresignTTL: cfg.PresignTTL}, cfg.MaxManifestSize, store, logger)
	for _, u := range upstreams {
		u.Observe(func(ctx context.Context, resp *http.Response, err error) { statsFrom(ctx).noteUpstream(resp, err) })
	}
	return &Proxy{
		cfg: cfg, store: store, upstreams: byHost, def: def, access: newAccess(cfg.Access), log: logger,
		cache: c,
		fills: fill.New(fill.Config{
			FillTimeout: cfg.FillTimeout, LeaseTTL: cfg.LeaseTTL, FillWait: cfg.FillWait,
			LargeBlobPolicy: cfg.LargeBlobPolicy, LargeBlobSize: cfg.LargeBlobSize, MaxBlobSize: cfg.MaxBlobSize,
			FillParts: cfg.FillParts, FillPartSize: cfg.FillPartSize, SpoolDir: cfg.SpoolDir, MaxFills: cfg.MaxFills,
			Background: cfg.BackgroundFill,
			Filled:     func(ctx context.Context, n int64) { statsFrom(ctx).filledBytes.Add(n) },
			Failed:     cfg.OnFillFailure, ProgressEvery: cfg.FillProgressEvery,
		}, store, c, logger),
	}, nil
}

// indexUpstreams maps upstreams by lower-case host and picks the default:
// the one named defaultHost, or the first.
func indexUpstreams(upstreams []*Upstream, defaultHost string) (map[string]*Upstream, *Upstream, error) {
	if len(upstreams) == 0 {
		return nil, nil, errors.New("proxy: no upstream configured")
	}
	hosts := make([]string, len(upstreams))
	byHost := map[string]*Upstream{}
	for i, u := range upstreams {
		hosts[i] = u.Host()
		byHost[strings.ToLower(u.Host())] = u
	}
	if err := ValidateUpstreamHosts(defaultHost, hosts); err != nil {
		return nil, nil, fmt.Errorf("proxy: %w", err)
	}
	def := upstreams[0]
	if defaultHost != "" {
		def = byHost[strings.ToLower(defaultHost)]
	}
	return byHost, def, nil
}

// Cache results, reported in the X-Pullthrough-Cache response header and
// the request log.
const (
	headerCache       = "X-Pullthrough-Cache"
	cacheHit          = "hit"
	cacheMiss         = "miss"
	cacheRevalidated  = "revalidated"
	cacheStale        = "stale"
	cachePassthrough  = "passthrough"
	cacheUpstream     = "upstream"
	headerAPIVersion  = "Docker-Distribution-API-Version"
	headerDigest      = "Docker-Content-Digest"
	apiVersionV2Value = "registry/2.0"
)

// contentSecurityPolicy is sent on every response: nothing the mirror
// serves is a web page.
const contentSecurityPolicy = "default-src 'none'; sandbox; frame-ancestors 'none'"

// headerUpstreamRateLimit passes the upstream's "ratelimit-remaining"
// (Docker Hub: "76;w=21600", pulls left in a window of seconds) on manifest
// answers that went upstream, so `pullthrough doctor` and operators see the
// budget the mirror's address has left.
const headerUpstreamRateLimit = "X-Pullthrough-Upstream-Ratelimit-Remaining"

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := p.now()
	rec := &recorder{ResponseWriter: w}
	id := requestID(r)
	rec.Header().Set(headerAPIVersion, apiVersionV2Value)
	rec.Header().Set("X-Request-Id", id)
	// Whatever an upstream put in a body, no browser renders it as a page
	// of the mirror's origin: no type sniffing, no script, no subresources,
	// a sandboxed origin (CSP Level 3 "sandbox"), no framing.
	rec.Header().Set("X-Content-Type-Options", "nosniff")
	rec.Header().Set("Content-Security-Policy", contentSecurityPolicy)

	ctx, stats := withStats(r.Context())
	r = r.WithContext(ctx)
	line := requestLine{id: id, start: start, kind: "unknown", stats: stats}
	err := p.handle(rec, r, &line)
	if err != nil {
		e := oci.From(err)
		if e.Status >= 500 {
			p.log.Warn("request failed", "request_id", id, "code", e.Code, "status", e.Status, "cause", errString(e.Err))
		}
		line.failure = []any{"code", e.Code, "error", e.Message}
		if e.Err != nil {
			line.failure = append(line.failure, "cause", e.Err.Error())
		}
		if !rec.wrote {
			oci.Write(rec, r, e)
		}
	}
	p.logRequest(r, rec, line)
	if line.aborted {
		panic(http.ErrAbortHandler)
	}
}

// requestLine is what the request's log line says beyond the response.
type requestLine struct {
	id       string
	start    time.Time
	kind     string // the route, "unknown" until parsed
	upstream string
	stats    *requestStats
	failure  []any // the error code and cause
	// aborted: a streamed transfer cut on purpose (copyStream), which
	// still gets its request line and metrics: the abort is re-raised once
	// they are written.
	aborted bool
}

// handle checks access, routes and serves one request; a panic becomes a
// 500 (an abort is noted in line instead).
func (p *Proxy) handle(rec *recorder, r *http.Request, line *requestLine) (err error) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				line.aborted = true
				return
			}
			p.log.Error("panic", "request_id", line.id, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			err = oci.ErrUnknown
		}
	}()
	if rt, err := parseRoute(r.URL.EscapedPath()); err == nil {
		line.kind = rt.kind.String() // for the log line, whatever happens next
	}
	if err := p.access.check(r); err != nil {
		// A refused client leaves: its connection does not keep a
		// keep-alive slot of the local server (MaxConns) for the idle
		// timeout. net/http closes after a response with this header.
		rec.Header().Set("Connection", "close")
		return err
	}
	if r.URL.Path == warmPath {
		line.kind = "warm"
		return p.serveWarm(rec, r)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		rec.Header().Set("Allow", "GET, HEAD")
		return oci.ErrUnsupported
	}
	rt, err := parseRoute(r.URL.EscapedPath())
	if err != nil {
		return err
	}
	if rt.kind != routeBase {
		if err := p.resolve(r, &rt); err != nil {
			return err
		}
		line.upstream = rt.up.Host()
		rec.Header().Set("OCI-Namespace", line.upstream)
	}
	return p.serve(r.Context(), rec, r, rt)
}

// logRequest writes the request's one log line (in Lambda also its EMF
// metrics) and tells Config.OnRequest.
func (p *Proxy) logRequest(r *http.Request, rec *recorder, line requestLine) {
	cache := rec.Header().Get(headerCache)
	attrs := []any{
		"request_id", line.id,
		"method", r.Method,
		"route", line.kind,
		"path", oci.Truncate(r.URL.Path),
		"upstream", line.upstream,
		"cache", cache,
		"status", rec.status,
		"bytes", rec.bytes,
		"duration_ms", p.now().Sub(line.start).Milliseconds(),
	}
	attrs = append(attrs, line.failure...)
	if line.aborted {
		attrs = append(attrs, "aborted", true)
	}
	p.log.Info("request", append(attrs, line.stats.logAttrs(cache, line.upstream, p.cfg.MetricsFunction, p.cfg.EmbeddedMetrics, p.now())...)...)
	if p.cfg.OnRequest != nil {
		p.cfg.OnRequest(line.stats.summary(line.kind, line.upstream, cache, rec.status))
	}
}

// resolve picks the upstream of a request, in this order: containerd's
// ?ns=<host>, a host as the first path component (/v2/ghcr.io/org/app/...),
// the default upstream. A registry that is not configured is refused before
// any outbound request, as is a repository the upstream's lists deny.
//
// Both can come together: containerd with a hosts.toml mirror whose URL has
// a path (`[host."https://mirror/v2/docker.io"]`, override_path = true)
// sends /v2/docker.io/library/alpine/manifests/3.20?ns=docker.io (see
// containerd docs/hosts.md, "override_path"). A prefix naming the same
// registry as ns (or an alias of it) is dropped; one naming another
// configured registry is refused, so a request never lands on a registry
// that neither the prefix nor ns alone would have picked.
func (p *Proxy) resolve(r *http.Request, rt *route) error {
	up := p.def
	first, rest, prefixed := strings.Cut(rt.name, "/")
	prefixed = prefixed && looksLikeHost(first)
	if ns := r.URL.Query().Get("ns"); ns != "" {
		u, ok := p.lookup(ns)
		if !ok {
			return oci.ErrNameUnknown.With(fmt.Sprintf("registry %q is not served by this mirror", oci.Truncate(ns)), nil)
		}
		up = u
		if prefixed {
			switch pu, ok := p.lookup(first); {
			case ok && pu == u:
				rt.name = rest
			case ok:
				return oci.ErrNameInvalid.With(fmt.Sprintf("path prefix %q and ns=%q name different registries", oci.Truncate(first), oci.Truncate(ns)), nil)
			}
		}
	} else if prefixed {
		u, ok := p.lookup(first)
		if !ok {
			return oci.ErrNameUnknown.With(fmt.Sprintf("registry %q is not served by this mirror", oci.Truncate(first)), nil)
		}
		up, rt.name = u, rest
	}
	return bind(rt, up)
}

// bind attaches an upstream to a route, mapping the name to the upstream's
// and applying its repository lists.
func bind(rt *route, up *Upstream) error {
	rt.name = up.CanonicalName(rt.name)
	if !up.Allowed(rt.name) {
		return oci.ErrDenied.With(fmt.Sprintf("repository %s on %s is not allowed on this mirror", rt.name, up.Host()), nil)
	}
	rt.up = up
	return nil
}

func (p *Proxy) lookup(host string) (*Upstream, bool) {
	u, ok := p.upstreams[dockerhub.Canonical(host)]
	return u, ok
}

// looksLikeHost tells a registry host from a repository path component the
// way Docker's reference grammar does: a dot, a port, or localhost.
func looksLikeHost(s string) bool {
	return strings.ContainsAny(s, ".:") || s == "localhost"
}

func (p *Proxy) serve(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route) error {
	switch rt.kind {
	case routeBase:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			io.WriteString(w, "{}")
		}
		return nil
	case routeManifest:
		return p.serveManifest(ctx, w, r, rt)
	case routeBlob:
		return p.serveBlob(ctx, w, r, rt)
	case routeTags:
		return p.serveTags(ctx, w, r, rt)
	default:
		return p.serveReferrers(ctx, w, r, rt)
	}
}

// requestID reuses a front end's request id when it looks like one, so
// log lines correlate; anything else gets a fresh random id.
func requestID(r *http.Request) string {
	if v := r.Header.Get("X-Amzn-Request-Id"); v != "" && len(v) <= 64 && strings.Trim(v, "0123456789abcdefABCDEF-") == "" {
		return v
	}
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// recorder remembers the status and size of a response for the request log.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wrote {
		r.WriteHeader(http.StatusOK)
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func setLength(h http.Header, n int64) { h.Set("Content-Length", strconv.FormatInt(n, 10)) }
