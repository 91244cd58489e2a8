package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/pullthrough/pullthrough/internal/cache"
	"github.com/pullthrough/pullthrough/internal/oci"
	"github.com/pullthrough/pullthrough/internal/upstream"
)

func (p *Proxy) serveManifest(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route) error {
	m, result, err := p.manifest(ctx, rt, parseAccept(r.Header))
	if err != nil {
		return err
	}
	return p.writeManifest(w, r, m, result, rt.tag != "" && p.cfg.NoContentLength)
}

// manifest answers a manifest request from the cache or the upstream,
// storing what it fetched. It returns the cache result for the response.
// The client's Accept list never reaches the upstream: it only selects
// what this client is sent.
func (p *Proxy) manifest(ctx context.Context, rt route, accept acceptList) (cache.Manifest, string, error) {
	if rt.digest != "" {
		m, result, err := p.manifestByDigest(ctx, rt.up, rt.name, rt.digest)
		if err != nil {
			return cache.Manifest{}, "", err
		}
		if accept.refuses(m.MediaType) {
			return cache.Manifest{}, "", notAccepted(m)
		}
		return m, result, nil
	}
	m, result, err := p.tagManifest(ctx, rt)
	if err != nil {
		return cache.Manifest{}, "", err
	}
	return p.forClient(ctx, rt, accept, m, result)
}

// forClient turns the full answer for a tag into the answer the upstream
// gives a client with this Accept list, following distribution's
// GetManifest (registry/handlers/manifests.go), which Docker Hub matches:
// a client that does not accept Docker manifest lists gets the list's
// first linux/amd64 image (404 MANIFEST_UNKNOWN if there is none, 400
// MANIFEST_INVALID if that image is a Docker schema 2 manifest the client
// does not accept either); an OCI manifest or index the client did not list
// is 404 MANIFEST_UNKNOWN; anything else is sent as it is. The image comes
// from the cache by digest like any other; the tag record is not touched.
func (p *Proxy) forClient(ctx context.Context, rt route, accept acceptList, m cache.Manifest, result string) (cache.Manifest, string, error) {
	if accept.listRewritten(m.MediaType) {
		child, ok := defaultPlatformChild(m.Data)
		if !ok {
			return cache.Manifest{}, "", oci.ErrManifestUnknown.With(fmt.Sprintf("manifest list has no %s/%s image and the client does not accept manifest lists", defaultOS, defaultArch), nil)
		}
		cm, childResult, err := p.manifestByDigest(ctx, rt.up, rt.name, child)
		if err != nil {
			return cache.Manifest{}, "", err
		}
		if cm.MediaType == oci.MediaDockerManifest && !accept.allows(oci.MediaDockerManifest) {
			return cache.Manifest{}, "", oci.ErrManifestInvalid.With("Schema 2 manifest not supported by client", nil)
		}
		if childResult == cacheMiss {
			result = cacheMiss
		}
		return cm, result, nil
	}
	if accept.refuses(m.MediaType) {
		return cache.Manifest{}, "", notAccepted(m)
	}
	return m, result, nil
}

// exchange is the result of one manifest or tag exchange with an upstream,
// shared by the requests of this process that waited for it.
type exchange struct {
	m      cache.Manifest
	result string // the leader's cache result
}

// manifestByDigest serves a manifest by digest from the cache, filling it
// from the upstream on a miss. Concurrent misses in this process share one
// upstream GET.
func (p *Proxy) manifestByDigest(ctx context.Context, up *Upstream, name string, d digest.Digest) (cache.Manifest, string, error) {
	m, err := p.cache.LoadManifest(ctx, up.Host(), d)
	switch {
	case err == nil:
		if err := p.checkLinkedManifest(ctx, up, name, m); err != nil {
			return cache.Manifest{}, "", err
		}
		return p.cache.NoteManifestUse(ctx, up.Host(), m), cacheHit, nil
	case !errors.Is(err, fs.ErrNotExist):
		return cache.Manifest{}, "", oci.ErrUnavailable.With("cache storage unavailable", err)
	}
	// Keyed by repository too: a fetch for one repository vouches for
	// nothing in another (see links.go).
	x, err := p.exchanges.Do(ctx, "manifest "+up.Host()+"/"+name+" "+cache.ManifestKey(d), false, 0, func() (exchange, error) {
		m, _, err := p.fetchManifest(context.WithoutCancel(ctx), up, name, d.String())
		if err != nil {
			return exchange{}, err
		}
		return exchange{m: m}, p.storeManifest(ctx, up, name, m)
	})
	if err != nil {
		return cache.Manifest{}, "", err
	}
	return x.m, cacheMiss, nil
}

// tagManifest returns what a tag is upstream, as a client accepting every
// manifest type would get it: from the cache while the record is fresh,
// else revalidated or fetched. Concurrent requests for one tag in this
// process share one upstream exchange.
func (p *Proxy) tagManifest(ctx context.Context, rt route) (cache.Manifest, string, error) {
	key := cache.TagKey(rt.up.Host(), rt.name, rt.tag)
	tr, m, err := p.cache.LoadTag(ctx, rt.up.Host(), key)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return cache.Manifest{}, "", oci.ErrUnavailable.With("cache storage unavailable", err)
	}
	if p.cache.Policy().Lookup(tr, err == nil, p.now()) == cache.TagServe {
		p.cache.NoteTagUse(ctx, key, tr)
		return m, cacheHit, nil
	}
	led := false
	x, err := p.exchanges.Do(ctx, "tag "+key, false, 0, func() (exchange, error) {
		led = true
		// The exchange finishes for the requests waiting on it even if
		// this client hangs up; upstream calls have their own deadlines.
		m, result, err := p.refreshTag(context.WithoutCancel(ctx), key, rt)
		return exchange{m: m, result: result}, err
	})
	if err != nil || led {
		return x.m, x.result, err
	}
	if x.result == cacheMiss {
		return x.m, cacheHit, nil // the leader fetched it; this request did not
	}
	return x.m, x.result, nil
}

// refreshTag revalidates or fetches a tag whose record is missing or
// expired (checked again: another request may just have refreshed it).
func (p *Proxy) refreshTag(ctx context.Context, key string, rt route) (cache.Manifest, string, error) {
	tr, m, err := p.cache.LoadTag(ctx, rt.up.Host(), key)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return cache.Manifest{}, "", oci.ErrUnavailable.With("cache storage unavailable", err)
	}
	switch p.cache.Policy().Lookup(tr, err == nil, p.now()) {
	case cache.TagServe:
		return m, cacheHit, nil
	case cache.TagRevalidate:
		return p.revalidate(ctx, key, rt, tr, m)
	}
	m, etag, err := p.fetchManifest(ctx, rt.up, rt.name, rt.tag)
	if err != nil {
		return cache.Manifest{}, "", err
	}
	return p.replaceTag(ctx, key, rt, m, etag)
}

// replaceTag stores a manifest fetched for a tag and points the tag at it.
func (p *Proxy) replaceTag(ctx context.Context, key string, rt route, m cache.Manifest, etag string) (cache.Manifest, string, error) {
	if err := p.storeManifest(ctx, rt.up, rt.name, m); err != nil {
		return cache.Manifest{}, "", err
	}
	if err := p.cache.SaveTag(ctx, key, cache.Tag{Digest: m.Digest, MediaType: m.MediaType, ETag: etag, Checked: p.now()}); err != nil {
		return cache.Manifest{}, "", err
	}
	return m, cacheMiss, nil
}

// revalidate checks an expired tag upstream and downloads the manifest
// only if the digest moved: a HEAD where the upstream has a usable one,
// then, if that did not settle it, a conditional GET (If-None-Match with
// the stored ETag). What the answers mean is cache.Policy.AfterRevalidation's
// to decide; this does the asking and applies the verdict.
func (p *Proxy) revalidate(ctx context.Context, key string, rt route, tr cache.Tag, cached cache.Manifest) (cache.Manifest, string, error) {
	var a cache.RevalAnswer
	var cause error // the last upstream error, for the log
	if !rt.up.Facts().Headless {
		status, d, err := rt.up.HeadManifest(ctx, rt.name, rt.tag)
		a.Head, cause = cache.HeadAnswer{Asked: true, Failed: err != nil, Status: status, Digest: d}, err
		a.BackingOff = errors.Is(err, upstream.ErrBackingOff)
	}
	pol := p.cache.Policy()
	v := pol.AfterRevalidation(tr, p.now(), a)
	var (
		m    cache.Manifest
		etag = tr.ETag
	)
	if v == cache.VerdictAskGET {
		var got upstream.Manifest
		got, cause = rt.up.GetManifest(ctx, rt.name, rt.tag, tr.ETag, p.cfg.MaxManifestSize)
		a.BackingOff = errors.Is(cause, upstream.ErrBackingOff)
		m, etag = cache.Manifest{MediaType: got.MediaType, Digest: got.Digest, Data: got.Data}, got.ETag
		a.Get = getAnswerOf(m, got.NotModified, cause)
		v = pol.AfterRevalidation(tr, p.now(), a)
	}
	if s := a.HeadlessStatus(); s != 0 && rt.up.NoteHeadless() {
		p.log.Info("upstream has no usable manifest HEAD, revalidating with conditional GET", "upstream", rt.up.Host(), "head_status", s)
	}
	switch v {
	case cache.VerdictRevalidated:
		p.cache.TouchTag(ctx, key, tr, etag)
		return cached, cacheRevalidated, nil
	case cache.VerdictReplaced:
		return p.replaceTag(ctx, key, rt, m, etag)
	case cache.VerdictGone:
		return cache.Manifest{}, "", fromUpstream(cause, oci.ErrManifestUnknown)
	case cache.VerdictDenied:
		p.log.Warn("upstream denies a cached tag, not serving it", "tag", rt.name+":"+rt.tag, "upstream", rt.up.Host(), "cause", errString(cause))
		return cache.Manifest{}, "", fromUpstream(cause, oci.ErrManifestUnknown)
	}
	if !a.BackingOff {
		attrs := []any{"tag", rt.name + ":" + rt.tag, "upstream_status", a.Head.Status}
		if cause != nil {
			attrs = []any{"tag", rt.name + ":" + rt.tag, "cause", cause.Error()}
		}
		p.log.Warn("revalidation failed, serving stale", attrs...)
	}
	p.cache.NoteTagUse(ctx, key, tr)
	return cached, cacheStale, nil
}

// getAnswerOf summarises a revalidating GET's results for the policy. Only
// the registry's own answers say anything about the tag: its 404, 410 or
// 451 (cache.GoneStatus) is "gone", its 401/403 after the token flow
// "denied". An answer that is not the registry's (upstream.ErrNotRegistry:
// a web page, a CDN challenge, a 401/403 without an OCI error body, a body
// of no manifest type) and any other failure (429, 5xx, unreachable, bad
// bytes) is trouble: "failed", and the cached tag is served stale.
func getAnswerOf(m cache.Manifest, notModified bool, err error) cache.GetAnswer {
	status := upstream.StatusOf(err)
	switch {
	case err == nil:
		return cache.GetAnswer{Kind: cache.GetOK, NotModified: notModified, Digest: m.Digest}
	case errors.Is(err, upstream.ErrNotRegistry):
		return cache.GetAnswer{Kind: cache.GetFailed}
	case cache.GoneStatus(status):
		return cache.GetAnswer{Kind: cache.GetGone}
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return cache.GetAnswer{Kind: cache.GetDenied}
	default:
		return cache.GetAnswer{Kind: cache.GetFailed}
	}
}

// notAccepted answers as a registry does when a manifest exists only in a
// media type the client did not list in Accept.
func notAccepted(m cache.Manifest) error {
	return oci.ErrManifestUnknown.With(fmt.Sprintf("manifest has media type %s, which the client does not accept", m.MediaType), nil)
}

// fetchManifest GETs a manifest (upstream.Client.GetManifest) and returns
// it with the upstream's ETag, its failures mapped to OCI errors.
func (p *Proxy) fetchManifest(ctx context.Context, up *Upstream, name, ref string) (cache.Manifest, string, error) {
	got, err := up.GetManifest(ctx, name, ref, "", p.cfg.MaxManifestSize)
	if err != nil {
		return cache.Manifest{}, "", fromUpstream(err, oci.ErrManifestUnknown)
	}
	return cache.Manifest{MediaType: got.MediaType, Digest: got.Digest, Data: got.Data}, got.ETag, nil
}

// storeManifest saves a manifest the upstream served for a repository and
// links it and its references to that repository.
func (p *Proxy) storeManifest(ctx context.Context, up *Upstream, name string, m cache.Manifest) error {
	if err := refsWithinCap(m); err != nil {
		return err
	}
	m.Used = p.now().UTC() // a fill is a use
	if err := p.cache.SaveManifest(ctx, up.Host(), m); err != nil {
		return err
	}
	p.cache.LinkManifest(ctx, up.Host(), name, m)
	return nil
}

// writeManifest answers with m. With hideDigest (a tag behind a front end
// that drops Content-Length, see Config.NoContentLength) the answer has no
// Docker-Content-Digest: clients then hash the body instead of trusting a
// digest that comes without the length they also require.
func (p *Proxy) writeManifest(w http.ResponseWriter, r *http.Request, m cache.Manifest, result string, hideDigest bool) error {
	h := w.Header()
	etag := `"` + m.Digest.String() + `"`
	h.Set("Content-Type", m.MediaType)
	if !hideDigest {
		h.Set(headerDigest, m.Digest.String())
	}
	h.Set("ETag", etag)
	h.Set(headerCache, result)
	// Only an answer that went upstream in this request knows the
	// upstream's budget; a hit says nothing rather than something old.
	if v := statsFrom(r.Context()).rateLimitHeader.Load(); v != nil {
		h.Set(headerUpstreamRateLimit, *v)
	}
	if result == cacheStale {
		h.Set("Warning", `110 pullthrough "Response is Stale"`)
	}
	if etagMatches(r.Header.Get("If-None-Match"), m.Digest) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	setLength(h, int64(len(m.Data)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		io.Copy(w, bytes.NewReader(m.Data))
	}
	return nil
}

// etagMatches implements If-None-Match for digest ETags. Weak validators
// and a bare digest are accepted: clients are not consistent about quoting.
func etagMatches(header string, d digest.Digest) bool {
	for _, v := range strings.Split(header, ",") {
		v = strings.TrimSpace(v)
		v = strings.TrimPrefix(v, "W/")
		v = strings.Trim(v, `"`)
		if v == "*" || v == d.String() {
			return true
		}
	}
	return false
}
