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
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// Manifest media types a pull needs. The mirror asks the upstream for all of
// them unless the client narrowed its Accept list.
const (
	mediaDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	mediaOCIIndex       = "application/vnd.oci.image.index.v1+json"
)

var knownManifestTypes = []string{mediaOCIIndex, mediaDockerList, mediaOCIManifest, mediaDockerManifest}

// storedManifest is the cache record of one manifest: exact upstream bytes
// and the media type they were served with. It is keyed by digest and so
// immutable.
type storedManifest struct {
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
	Data      []byte        `json:"data"`
}

// tagRecord maps a tag of one upstream repository to a manifest digest.
type tagRecord struct {
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	ETag      string        `json:"etag,omitempty"`
	Checked   time.Time     `json:"checked"`
}

func manifestKey(d digest.Digest) string {
	return "manifests/" + d.Algorithm().String() + "/" + d.Encoded()
}

// tagKey scopes tags by upstream host. "_tag" cannot be a repository path
// component (they start with a letter or digit), so a repository and a tag
// never share a key.
func tagKey(host, name, tag string) string {
	return "tags/" + host + "/" + name + "/_tag/" + tag
}

// acceptList is a client's Accept header reduced to media types.
type acceptList struct {
	any   bool
	types map[string]bool
}

func parseAccept(h http.Header) acceptList {
	a := acceptList{types: map[string]bool{}}
	for _, v := range h.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			mt = strings.ToLower(strings.TrimSpace(mt))
			switch mt {
			case "":
			case "*/*", "application/*":
				a.any = true
			default:
				a.types[mt] = true
			}
		}
	}
	if len(a.types) == 0 {
		a.any = true // no Accept header: the client takes what it gets
	}
	return a
}

func (a acceptList) allows(mediaType string) bool {
	return a.any || a.types[mediaType]
}

// complete reports whether the client takes every manifest type we know,
// so an upstream answer to it is the answer for every client.
func (a acceptList) complete() bool {
	for _, t := range knownManifestTypes {
		if !a.allows(t) {
			return false
		}
	}
	return true
}

// upstreamHeader is the Accept header sent upstream.
func (a acceptList) upstreamHeader() string {
	if a.complete() {
		return strings.Join(knownManifestTypes, ", ")
	}
	var out []string
	for t := range a.types {
		out = append(out, t)
	}
	return strings.Join(out, ", ")
}

var fullAccept = acceptList{any: true}

func (p *Proxy) serveManifest(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route) error {
	m, cache, err := p.manifest(ctx, rt, parseAccept(r.Header))
	if err != nil {
		return err
	}
	return p.writeManifest(w, r, m, cache, rt.tag != "" && p.cfg.NoContentLength)
}

// manifest answers a manifest request from the cache or the upstream,
// storing what it fetched. It returns the cache result for the response.
func (p *Proxy) manifest(ctx context.Context, rt route, accept acceptList) (storedManifest, string, error) {
	if rt.digest != "" {
		m, err := p.loadManifest(ctx, rt.digest)
		switch {
		case err == nil:
			if !accept.allows(m.MediaType) {
				return storedManifest{}, "", notAccepted(m)
			}
			return m, cacheHit, nil
		case !errors.Is(err, fs.ErrNotExist):
			return storedManifest{}, "", ErrUnavailable.With("cache storage unavailable", err)
		}
		m, _, err = p.fetchManifest(ctx, rt.up, rt.name, rt.digest.String(), accept)
		if err != nil {
			return storedManifest{}, "", err
		}
		if err := p.saveManifest(ctx, m); err != nil {
			return storedManifest{}, "", err
		}
		if !accept.allows(m.MediaType) {
			return storedManifest{}, "", notAccepted(m)
		}
		return m, cacheMiss, nil
	}

	key := tagKey(rt.up.Host(), rt.name, rt.tag)
	tr, m, err := p.loadTag(ctx, key)
	switch {
	case err == nil && accept.allows(m.MediaType):
		if p.now().Sub(tr.Checked) < p.cfg.ManifestTTL {
			return m, cacheHit, nil
		}
		return p.revalidate(ctx, key, rt, tr, m)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return storedManifest{}, "", ErrUnavailable.With("cache storage unavailable", err)
	}

	m, etag, err := p.fetchManifest(ctx, rt.up, rt.name, rt.tag, accept)
	if err != nil {
		return storedManifest{}, "", err
	}
	if err := p.saveManifest(ctx, m); err != nil {
		return storedManifest{}, "", err
	}
	if err := p.saveTag(ctx, key, tagRecord{Digest: m.Digest, MediaType: m.MediaType, ETag: etag, Checked: p.now()}); err != nil {
		return storedManifest{}, "", err
	}
	if !accept.allows(m.MediaType) {
		return storedManifest{}, "", notAccepted(m)
	}
	return m, cacheMiss, nil
}

// revalidate checks an expired tag upstream with a HEAD (not a counted pull
// on Docker Hub) and downloads the manifest only if the digest moved. Any
// upstream trouble but "tag gone" serves the cached copy, marked stale.
func (p *Proxy) revalidate(ctx context.Context, key string, rt route, tr tagRecord, cached storedManifest) (storedManifest, string, error) {
	if rt.up.backingOff(p.now()) {
		return cached, cacheStale, nil
	}
	hdr := http.Header{"Accept": {fullAccept.upstreamHeader()}}
	rctx, cancel := context.WithTimeout(ctx, rt.up.timeouts.manifest)
	defer cancel()
	resp, err := rt.up.do(rctx, http.MethodHead, rt.name, "manifests/"+rt.tag, hdr)
	if err != nil {
		p.log.Warn("revalidation failed, serving stale", "tag", rt.name+":"+rt.tag, "cause", err.Error())
		return cached, cacheStale, nil
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return storedManifest{}, "", ErrManifestUnknown.With("tag no longer exists upstream", nil)
	case resp.StatusCode != http.StatusOK:
		rt.up.noteFailure(resp, p.now())
		p.log.Warn("revalidation failed, serving stale", "tag", rt.name+":"+rt.tag, "upstream_status", resp.StatusCode)
		return cached, cacheStale, nil
	}
	if d, err := digest.Parse(resp.Header.Get(headerDigest)); err == nil && d == tr.Digest {
		p.touchTag(ctx, key, tr)
		return cached, cacheRevalidated, nil
	}
	// Changed, or an upstream that does not say: a conditional GET.
	m, etag, notModified, err := p.fetchManifestIfChanged(ctx, rt.up, rt.name, rt.tag, tr.ETag)
	if err != nil {
		var oe *Error
		if errors.As(err, &oe) && oe.Code == ErrManifestUnknown.Code {
			return storedManifest{}, "", err
		}
		p.log.Warn("revalidation failed, serving stale", "tag", rt.name+":"+rt.tag, "cause", err.Error())
		return cached, cacheStale, nil
	}
	if notModified {
		p.touchTag(ctx, key, tr)
		return cached, cacheRevalidated, nil
	}
	if err := p.saveManifest(ctx, m); err != nil {
		return storedManifest{}, "", err
	}
	if err := p.saveTag(ctx, key, tagRecord{Digest: m.Digest, MediaType: m.MediaType, ETag: etag, Checked: p.now()}); err != nil {
		return storedManifest{}, "", err
	}
	return m, cacheMiss, nil
}

// notAccepted answers as a registry does when a manifest exists only in a
// media type the client did not list in Accept.
func notAccepted(m storedManifest) error {
	return ErrManifestUnknown.With(fmt.Sprintf("manifest has media type %s, which the client does not accept", m.MediaType), nil)
}

func (p *Proxy) fetchManifest(ctx context.Context, up *Upstream, name, ref string, accept acceptList) (storedManifest, string, error) {
	if up.backingOff(p.now()) {
		return storedManifest{}, "", ErrTooManyRequests.With("upstream asked the mirror to back off and there is no cached copy", nil)
	}
	m, etag, _, err := p.getManifest(ctx, up, name, ref, http.Header{"Accept": {accept.upstreamHeader()}})
	return m, etag, err
}

func (p *Proxy) fetchManifestIfChanged(ctx context.Context, up *Upstream, name, tag, etag string) (storedManifest, string, bool, error) {
	hdr := http.Header{"Accept": {fullAccept.upstreamHeader()}}
	if etag != "" {
		hdr.Set("If-None-Match", etag)
	}
	return p.getManifest(ctx, up, name, tag, hdr)
}

// getManifest GETs a manifest and verifies it against the digest it was
// asked by, or else against the digest the upstream claims.
func (p *Proxy) getManifest(ctx context.Context, up *Upstream, name, ref string, hdr http.Header) (storedManifest, string, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, up.timeouts.manifest)
	defer cancel()
	resp, err := up.do(ctx, http.MethodGet, name, "manifests/"+ref, hdr)
	if err != nil {
		return storedManifest{}, "", false, ErrUnavailable.With("upstream registry unreachable", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified {
		return storedManifest{}, "", true, nil
	}
	if resp.StatusCode != http.StatusOK {
		up.noteFailure(resp, p.now())
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return storedManifest{}, "", false, upstreamError(resp, ErrManifestUnknown)
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
	got := alg.FromBytes(data)
	if want != "" && got != want {
		return storedManifest{}, "", false, ErrUpstreamBadBytes.With("", fmt.Errorf("manifest %s/%s: upstream sent %s", name, ref, got))
	}
	mt := manifestMediaType(resp.Header.Get("Content-Type"), data)
	if mt == "" {
		return storedManifest{}, "", false, ErrUnavailable.With("upstream manifest has no media type", nil)
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

// memoManifestMax is the largest manifest kept in memory; typical ones are
// a few KiB, and the memo holds at most 1024 of them.
const memoManifestMax = 64 << 10

func (p *Proxy) loadManifest(ctx context.Context, d digest.Digest) (storedManifest, error) {
	if m, ok := p.manifests.get(d, p.now(), time.Hour); ok {
		return m, nil
	}
	m, err := p.loadManifestFromStore(ctx, d)
	if err == nil && len(m.Data) <= memoManifestMax {
		p.manifests.put(d, m, p.now())
	}
	return m, err
}

func (p *Proxy) loadManifestFromStore(ctx context.Context, d digest.Digest) (storedManifest, error) {
	var m storedManifest
	if err := p.loadJSON(ctx, manifestKey(d), &m); err != nil {
		return m, err
	}
	// A record that does not hash to its key is damage, not content.
	if m.Digest != d || d.Algorithm().FromBytes(m.Data) != d {
		return storedManifest{}, fmt.Errorf("manifest record %s is corrupt: %w", d, fs.ErrNotExist)
	}
	return m, nil
}

// loadTag reads a tag record, from memory while it is fresh (a stale one
// is re-read: another instance may have revalidated it meanwhile).
func (p *Proxy) loadTag(ctx context.Context, key string) (tagRecord, storedManifest, error) {
	tr, ok := p.tags.get(key, p.now(), p.cfg.ManifestTTL)
	if !ok || p.now().Sub(tr.Checked) >= p.cfg.ManifestTTL {
		if err := p.loadJSON(ctx, key, &tr); err != nil {
			return tr, storedManifest{}, err
		}
		p.tags.put(key, tr, p.now())
	}
	m, err := p.loadManifest(ctx, tr.Digest)
	return tr, m, err
}

func (p *Proxy) loadJSON(ctx context.Context, key string, v any) error {
	rc, _, err := p.store.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	// base64 in JSON is 4/3 of the manifest plus a little.
	data, err := io.ReadAll(io.LimitReader(rc, 2*p.cfg.MaxManifestSize+4096))
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("record %s unreadable (%v): %w", key, err, fs.ErrNotExist)
	}
	return nil
}

func (p *Proxy) saveManifest(ctx context.Context, m storedManifest) error {
	return p.saveJSON(ctx, manifestKey(m.Digest), m)
}

// touchTag records that the upstream confirmed a tag just now. A failure
// only costs an earlier revalidation next time, so it is logged, not fatal.
func (p *Proxy) touchTag(ctx context.Context, key string, tr tagRecord) {
	tr.Checked = p.now()
	if err := p.saveTag(ctx, key, tr); err != nil {
		p.log.Warn("could not record revalidation", "cause", err.Error())
	}
}

func (p *Proxy) saveTag(ctx context.Context, key string, tr tagRecord) error {
	p.tags.put(key, tr, p.now())
	return p.saveJSON(ctx, key, tr)
}

func (p *Proxy) saveJSON(ctx context.Context, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	// Storing must finish even if the client hangs up: the bytes are
	// verified and the next client wants them.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := p.store.Put(ctx, key, data); err != nil {
		return ErrUnavailable.With("cache storage unavailable", fmt.Errorf("put %s: %w", key, err))
	}
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
