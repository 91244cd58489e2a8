package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
)

func (p *Proxy) serveManifest(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route) error {
	m, cache, err := p.manifest(ctx, rt, parseAccept(r.Header))
	if err != nil {
		return err
	}
	return p.writeManifest(w, r, m, cache, rt.tag != "" && p.cfg.NoContentLength)
}

// manifest answers a manifest request from the cache or the upstream,
// storing what it fetched. It returns the cache result for the response.
// The client's Accept list never reaches the upstream: it only selects
// what this client is sent.
func (p *Proxy) manifest(ctx context.Context, rt route, accept acceptList) (storedManifest, string, error) {
	if rt.digest != "" {
		m, cache, err := p.manifestByDigest(ctx, rt.up, rt.name, rt.digest)
		if err != nil {
			return storedManifest{}, "", err
		}
		if accept.refuses(m.MediaType) {
			return storedManifest{}, "", notAccepted(m)
		}
		return m, cache, nil
	}
	m, cache, err := p.tagManifest(ctx, rt)
	if err != nil {
		return storedManifest{}, "", err
	}
	return p.forClient(ctx, rt, accept, m, cache)
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
func (p *Proxy) forClient(ctx context.Context, rt route, accept acceptList, m storedManifest, cache string) (storedManifest, string, error) {
	if accept.listRewritten(m.MediaType) {
		child, ok := defaultPlatformChild(m.Data)
		if !ok {
			return storedManifest{}, "", ErrManifestUnknown.With(fmt.Sprintf("manifest list has no %s/%s image and the client does not accept manifest lists", defaultOS, defaultArch), nil)
		}
		cm, childCache, err := p.manifestByDigest(ctx, rt.up, rt.name, child)
		if err != nil {
			return storedManifest{}, "", err
		}
		if cm.MediaType == mediaDockerManifest && !accept.allows(mediaDockerManifest) {
			return storedManifest{}, "", ErrManifestInvalid.With("Schema 2 manifest not supported by client", nil)
		}
		if childCache == cacheMiss {
			cache = cacheMiss
		}
		return cm, cache, nil
	}
	if accept.refuses(m.MediaType) {
		return storedManifest{}, "", notAccepted(m)
	}
	return m, cache, nil
}

// manifestByDigest serves a manifest by digest from the cache, filling it
// from the upstream on a miss. Concurrent misses in this process share one
// upstream GET.
func (p *Proxy) manifestByDigest(ctx context.Context, up *Upstream, name string, d digest.Digest) (storedManifest, string, error) {
	m, err := p.cache.loadManifest(ctx, d)
	switch {
	case err == nil:
		if err := p.checkLinkedManifest(ctx, up, name, m); err != nil {
			return storedManifest{}, "", err
		}
		return p.cache.noteManifestUse(ctx, m), cacheHit, nil
	case !errors.Is(err, fs.ErrNotExist):
		return storedManifest{}, "", ErrUnavailable.With("cache storage unavailable", err)
	}
	var led bool
	// Keyed by repository too: a fetch for one repository vouches for
	// nothing in another (see links.go).
	_, err = p.fills.do(ctx, "manifest "+up.Host()+"/"+name+" "+manifestKey(d), false, 0, func() (int64, error) {
		led = true
		m, _, err = p.fetchManifest(context.WithoutCancel(ctx), up, name, d.String())
		if err != nil {
			return 0, err
		}
		return 0, p.storeManifest(ctx, up, name, m)
	})
	if err != nil {
		return storedManifest{}, "", err
	}
	if !led {
		if m, err = p.cache.loadManifest(ctx, d); err != nil {
			return storedManifest{}, "", ErrUnavailable.With("cache storage unavailable", err)
		}
	}
	return m, cacheMiss, nil
}

// tagManifest returns what a tag is upstream, as a client accepting every
// manifest type would get it: from the cache while the record is fresh,
// else revalidated or fetched. Concurrent requests for one tag in this
// process share one upstream exchange; the others read its result from
// the cache.
func (p *Proxy) tagManifest(ctx context.Context, rt route) (storedManifest, string, error) {
	key := tagKey(rt.up.Host(), rt.name, rt.tag)
	tr, m, err := p.cache.loadTag(ctx, key)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return storedManifest{}, "", ErrUnavailable.With("cache storage unavailable", err)
	}
	if p.cache.policy.lookup(tr, err == nil, p.now()) == tagServe {
		p.cache.noteTagUse(ctx, key, tr)
		return m, cacheHit, nil
	}
	var (
		led   bool
		cache string
	)
	// The leader's cache result travels to the waiters as an index into
	// cacheResults (the flight group carries one number).
	n, err := p.fills.do(ctx, "tag "+key, false, 0, func() (int64, error) {
		led = true
		var err error
		// The exchange finishes for the requests waiting on it even if
		// this client hangs up; upstream calls have their own deadlines.
		m, cache, err = p.refreshTag(context.WithoutCancel(ctx), key, rt)
		return int64(slices.Index(cacheResults, cache)), err
	})
	if err != nil || led {
		return m, cache, err
	}
	if _, m, err = p.cache.loadTag(ctx, key); err != nil {
		return storedManifest{}, "", ErrUnavailable.With("cache storage unavailable", err)
	}
	cache = cacheHit // the leader fetched it; this request did not
	if n >= 0 && cacheResults[n] != cacheMiss {
		cache = cacheResults[n]
	}
	return m, cache, nil
}

// cacheResults are the cache results a tag exchange can have.
var cacheResults = []string{cacheHit, cacheMiss, cacheRevalidated, cacheStale}

// refreshTag revalidates or fetches a tag whose record is missing or
// expired (checked again: another request may just have refreshed it).
func (p *Proxy) refreshTag(ctx context.Context, key string, rt route) (storedManifest, string, error) {
	tr, m, err := p.cache.loadTag(ctx, key)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return storedManifest{}, "", ErrUnavailable.With("cache storage unavailable", err)
	}
	switch p.cache.policy.lookup(tr, err == nil, p.now()) {
	case tagServe:
		return m, cacheHit, nil
	case tagRevalidate:
		return p.revalidate(ctx, key, rt, tr, m)
	}
	m, etag, err := p.fetchManifest(ctx, rt.up, rt.name, rt.tag)
	if err != nil {
		return storedManifest{}, "", err
	}
	return p.replaceTag(ctx, key, rt, m, etag)
}

// replaceTag stores a manifest fetched for a tag and points the tag at it.
func (p *Proxy) replaceTag(ctx context.Context, key string, rt route, m storedManifest, etag string) (storedManifest, string, error) {
	if err := p.storeManifest(ctx, rt.up, rt.name, m); err != nil {
		return storedManifest{}, "", err
	}
	if err := p.cache.saveTag(ctx, key, tagRecord{Digest: m.Digest, MediaType: m.MediaType, ETag: etag, Checked: p.now()}); err != nil {
		return storedManifest{}, "", err
	}
	return m, cacheMiss, nil
}

// revalidate checks an expired tag upstream and downloads the manifest
// only if the digest moved: a HEAD where the upstream has a usable one,
// then, if that did not settle it, a conditional GET (If-None-Match with
// the stored ETag). What the answers mean is cachePolicy.afterRevalidation's
// to decide; this does the asking and applies the verdict.
func (p *Proxy) revalidate(ctx context.Context, key string, rt route, tr tagRecord, cached storedManifest) (storedManifest, string, error) {
	a := revalAnswer{BackingOff: rt.up.backingOff(p.now())}
	var cause error // the last upstream error, for the log
	if !a.BackingOff && !p.cache.headless(rt.up.Host()) {
		status, d, err := p.headManifest(ctx, rt)
		a.Head, cause = headAnswer{Asked: true, Failed: err != nil, Status: status, Digest: d}, err
	}
	v := p.cache.policy.afterRevalidation(tr, p.now(), a)
	var (
		m    storedManifest
		etag = tr.ETag
	)
	if v == verdictAskGET {
		var notModified bool
		m, etag, notModified, cause = p.fetchManifestIfChanged(ctx, rt.up, rt.name, rt.tag, tr.ETag)
		a.Get = getAnswerOf(m, notModified, cause)
		v = p.cache.policy.afterRevalidation(tr, p.now(), a)
	}
	if s := a.headlessStatus(); s != 0 {
		p.cache.noteHeadless(rt.up.Host(), s)
	}
	switch v {
	case verdictRevalidated:
		p.cache.touchTag(ctx, key, tr, etag)
		return cached, cacheRevalidated, nil
	case verdictReplaced:
		return p.replaceTag(ctx, key, rt, m, etag)
	case verdictGone:
		return storedManifest{}, "", cause
	case verdictDenied:
		var oe *Error
		errors.As(cause, &oe) // getAnswerOf saw an *Error to call it denied
		p.log.Warn("upstream denies a cached tag, not serving it", "tag", rt.name+":"+rt.tag, "upstream", rt.up.Host(), "cause", errString(oe.Err))
		return storedManifest{}, "", cause
	}
	if !a.BackingOff {
		attrs := []any{"tag", rt.name + ":" + rt.tag, "upstream_status", a.Head.Status}
		if cause != nil {
			attrs = []any{"tag", rt.name + ":" + rt.tag, "cause", cause.Error()}
		}
		p.log.Warn("revalidation failed, serving stale", attrs...)
	}
	p.cache.noteTagUse(ctx, key, tr)
	return cached, cacheStale, nil
}

// headManifest asks the upstream for a tag's digest without a body. It
// returns the status and the digest the upstream named ("" if none).
func (p *Proxy) headManifest(ctx context.Context, rt route) (int, digest.Digest, error) {
	ctx, cancel := context.WithTimeout(ctx, rt.up.timeouts.metadata)
	defer cancel()
	resp, err := rt.up.do(ctx, http.MethodHead, rt.name, "manifests/"+rt.tag, http.Header{"Accept": {resolveAccept}})
	if err != nil {
		return 0, "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		rt.up.noteFailure(resp, p.now())
		return resp.StatusCode, "", nil
	}
	d, err := digest.Parse(resp.Header.Get(headerDigest))
	if err != nil {
		d = ""
	}
	return resp.StatusCode, d, nil
}

// notAccepted answers as a registry does when a manifest exists only in a
// media type the client did not list in Accept.
func notAccepted(m storedManifest) error {
	return ErrManifestUnknown.With(fmt.Sprintf("manifest has media type %s, which the client does not accept", m.MediaType), nil)
}

// fetchManifest GETs a manifest with the full Accept list.
func (p *Proxy) fetchManifest(ctx context.Context, up *Upstream, name, ref string) (storedManifest, string, error) {
	if up.backingOff(p.now()) {
		return storedManifest{}, "", ErrTooManyRequests.With("upstream asked the mirror to back off and there is no cached copy", nil)
	}
	m, etag, _, err := p.getManifest(ctx, up, name, ref, http.Header{"Accept": {resolveAccept}})
	return m, etag, err
}

func (p *Proxy) fetchManifestIfChanged(ctx context.Context, up *Upstream, name, tag, etag string) (storedManifest, string, bool, error) {
	hdr := http.Header{"Accept": {resolveAccept}}
	if etag != "" {
		hdr.Set("If-None-Match", etag)
	}
	return p.getManifest(ctx, up, name, tag, hdr)
}

// getManifest GETs a manifest and verifies it against the digest it was
// asked by, or else against the digest the upstream claims; a signed
// schema 1 manifest is verified by its payload's digest (manifestDigests).
// A 304 reports notModified and the ETag the request carried.
func (p *Proxy) getManifest(ctx context.Context, up *Upstream, name, ref string, hdr http.Header) (m storedManifest, etag string, notModified bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, up.timeouts.metadata)
	defer cancel()
	resp, err := up.do(ctx, http.MethodGet, name, "manifests/"+ref, hdr)
	if err != nil {
		return storedManifest{}, "", false, ErrUnavailable.With("upstream registry unreachable", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified {
		return storedManifest{}, hdr.Get("If-None-Match"), true, nil
	}
	if resp.StatusCode != http.StatusOK {
		up.noteFailure(resp, p.now())
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return storedManifest{}, "", false, upstreamError(resp, ErrManifestUnknown, p.now())
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, p.cfg.MaxManifestSize+1))
	if err != nil {
		return storedManifest{}, "", false, ErrUnavailable.With("upstream manifest download failed", err)
	}
	if int64(len(data)) > p.cfg.MaxManifestSize {
		return storedManifest{}, "", false, ErrUnavailable.With(fmt.Sprintf("upstream manifest is larger than %d bytes", p.cfg.MaxManifestSize), nil)
	}
	if resp.ContentLength >= 0 && resp.ContentLength != int64(len(data)) {
		return storedManifest{}, "", false, ErrUpstreamBadBytes.With("upstream manifest was truncated", nil)
	}
	mt := manifestMediaType(resp.Header.Get("Content-Type"), data)
	if mt == "" {
		return storedManifest{}, "", false, ErrUnavailable.With("upstream manifest has no media type", nil)
	}
	// digest.Parse returns its input even when it is invalid.
	want, err := digest.Parse(ref)
	if err != nil {
		if want, err = digest.Parse(resp.Header.Get(headerDigest)); err != nil {
			want = ""
		}
	}
	alg := digest.Canonical
	if want != "" {
		alg = want.Algorithm()
	}
	candidates := manifestDigests(alg, mt, data)
	got := candidates[0]
	if want != "" {
		if !slices.Contains(candidates, want) {
			return storedManifest{}, "", false, ErrUpstreamBadBytes.With("", fmt.Errorf("manifest %s/%s: upstream sent %s", name, ref, got))
		}
		got = want
	}
	return storedManifest{MediaType: mt, Digest: got, Data: data}, resp.Header.Get("ETag"), false, nil
}

// manifestMediaType trusts a specific Content-Type and otherwise reads the
// manifest's own mediaType field (some registries answer application/json).
func manifestMediaType(contentType string, data []byte) string {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt != "" && mt != "application/json" && mt != "text/plain" && mt != "application/octet-stream" {
		return mt
	}
	var probe struct {
		MediaType string `json:"mediaType"`
	}
	if json.Unmarshal(data, &probe) == nil && probe.MediaType != "" {
		return probe.MediaType
	}
	return mt
}

// storeManifest saves a manifest the upstream served for a repository and
// links it and its references to that repository.
func (p *Proxy) storeManifest(ctx context.Context, up *Upstream, name string, m storedManifest) error {
	m.Used = p.now().UTC() // a fill is a use
	if err := p.cache.saveManifest(ctx, m); err != nil {
		return err
	}
	p.cache.linkManifest(ctx, up.Host(), name, m)
	return nil
}

// writeManifest answers with m. With hideDigest (a tag behind a front end
// that drops Content-Length, see Config.NoContentLength) the answer has no
// Docker-Content-Digest: clients then hash the body instead of trusting a
// digest that comes without the length they also require.
func (p *Proxy) writeManifest(w http.ResponseWriter, r *http.Request, m storedManifest, cache string, hideDigest bool) error {
	h := w.Header()
	etag := `"` + m.Digest.String() + `"`
	h.Set("Content-Type", m.MediaType)
	if !hideDigest {
		h.Set(headerDigest, m.Digest.String())
	}
	h.Set("ETag", etag)
	h.Set(headerCache, cache)
	// Only an answer that went upstream in this request knows the
	// upstream's budget; a hit says nothing rather than something old.
	if v := statsFrom(r.Context()).rateLimitHeader.Load(); v != nil {
		h.Set(headerUpstreamRateLimit, *v)
	}
	if cache == cacheStale {
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
