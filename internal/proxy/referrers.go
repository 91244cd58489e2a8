package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// referrersIndex is the image index the referrers API answers. It is not
// ocispec.Index: its descriptors stay raw so that each reaches the client
// byte for byte, with any field image-spec does not know.
type referrersIndex struct {
	specs.Versioned
	MediaType string            `json:"mediaType"`
	Manifests []json.RawMessage `json:"manifests"`
}

// serveReferrers answers the OCI referrers API. It asks the upstream's
// referrers API and, where the upstream has none, reads the tag-schema
// fallback (<alg>-<hex> tag); answers are cached like tags and served stale
// when the upstream fails.
func (p *Proxy) serveReferrers(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route) error {
	artifactType := r.URL.Query().Get("artifactType")
	if len(artifactType) > 255 {
		return ErrQueryInvalid.With("artifactType too long", nil)
	}
	key := referrersKey(rt.up.Host(), rt.name, rt.digest)
	var cached referrersRecord
	haveCache := p.cache.loadJSON(ctx, key, &cached) == nil
	cache := cacheHit
	index := cached.Index
	if !haveCache || !p.cache.policy.fresh(cached.Checked, p.now()) {
		fresh, err := p.fetchReferrers(ctx, rt)
		switch {
		case err == nil:
			index, cache = fresh, cacheMiss
			if err := p.cache.saveJSON(ctx, key, referrersRecord{Checked: p.now(), Index: fresh}); err != nil {
				p.log.Warn("could not cache referrers", "cause", err.Error())
			}
		case haveCache:
			p.log.Warn("referrers refresh failed, serving stale", "cause", err.Error())
			cache = cacheStale
		default:
			return err
		}
	}
	var idx referrersIndex
	if err := json.Unmarshal(index, &idx); err != nil {
		return ErrUnavailable.With("upstream referrers index unreadable", err)
	}
	if artifactType != "" {
		kept := []json.RawMessage{}
		for _, m := range idx.Manifests {
			var d ocispec.Descriptor
			if decodeSpec(m, &d) == nil && d.ArtifactType == artifactType {
				kept = append(kept, m)
			}
		}
		idx.Manifests = kept
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	if idx.Manifests == nil {
		idx.Manifests = []json.RawMessage{}
	}
	idx.SchemaVersion, idx.MediaType = 2, ocispec.MediaTypeImageIndex
	body, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", ocispec.MediaTypeImageIndex)
	h.Set(headerCache, cache)
	setLength(h, int64(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
	return nil
}

// fetchReferrers asks the upstream's referrers API and falls back to the
// tag schema (<alg>-<hex> tag) for any answer that is not a valid image
// index. The OCI distribution spec (spec.md, "Listing Referrers") says: "If
// the referrers API returns a 404, the client MUST fallback to pulling the
// referrers tag schema", and if that "does not return a valid image index,
// the client SHOULD assume there are no referrers". Registries without the
// API answer more than 404: Artifactory answers 406
// (google/go-containerregistry#1962), some a 400 or a 200 HTML page.
// Only auth, rate-limit and server failures are errors: they say nothing
// about the API, and a cached answer is served instead.
func (p *Proxy) fetchReferrers(ctx context.Context, rt route) (json.RawMessage, error) {
	if rt.up.backingOff(p.now()) {
		return nil, ErrTooManyRequests.With("upstream asked the mirror to back off", nil)
	}
	ctx, cancel := context.WithTimeout(ctx, rt.up.timeouts.metadata)
	defer cancel()
	hdr := http.Header{"Accept": {ocispec.MediaTypeImageIndex}}
	body, err := p.getIndex(ctx, rt, "referrers/"+rt.digest.String(), hdr)
	if !errors.Is(err, errNotAnIndex) {
		return body, err
	}
	tag := rt.digest.Algorithm().String() + "-" + rt.digest.Encoded()
	body, err = p.getIndex(ctx, rt, "manifests/"+tag, hdr)
	if errors.Is(err, errNotAnIndex) {
		// The spec: no valid index under the tag means no referrers.
		return json.RawMessage(`{"schemaVersion":2,"mediaType":"` + ocispec.MediaTypeImageIndex + `","manifests":[]}`), nil
	}
	return body, err
}

// errNotAnIndex is an upstream answer that is not an image index and not a
// failure either: the thing asked for is absent or unsupported.
var errNotAnIndex = errors.New("upstream answer is not an image index")

// getIndex GETs a small image index. A client error other than auth and
// rate limiting, or a 200 that is not an OCI image index, is errNotAnIndex.
func (p *Proxy) getIndex(ctx context.Context, rt route, rest string, hdr http.Header) (json.RawMessage, error) {
	resp, err := rt.up.do(ctx, http.MethodGet, rt.name, rest, hdr)
	if err != nil {
		return nil, ErrUnavailable.With("upstream registry unreachable", err)
	}
	defer resp.Body.Close()
	switch s := resp.StatusCode; {
	case s == http.StatusOK:
	case s >= 400 && s < 500 && s != http.StatusUnauthorized && s != http.StatusForbidden && s != http.StatusTooManyRequests:
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, fmt.Errorf("%s: upstream answered %d: %w", rest, s, errNotAnIndex)
	default:
		rt.up.noteFailure(resp, p.now())
		return nil, upstreamError(resp, ErrManifestUnknown, p.now())
	}
	body, err := readBounded(resp.Body, p.cfg.MaxManifestSize)
	if err != nil {
		return nil, ErrUnavailable.With("upstream referrers download failed", fmt.Errorf("%s: %w", rest, err))
	}
	// Read strictly, with the type serveReferrers reads the cached answer
	// with (decodeSpec's tolerance would let through an answer that
	// serveReferrers then cannot read, failing every request).
	var idx referrersIndex
	if json.Unmarshal(body, &idx) != nil || idx.SchemaVersion != 2 || idx.Manifests == nil ||
		!(idx.MediaType == ocispec.MediaTypeImageIndex || idx.MediaType == "" && mediaTypeOf(resp.Header) == ocispec.MediaTypeImageIndex) {
		return nil, fmt.Errorf("%s: %w", rest, errNotAnIndex)
	}
	return body, nil
}

// mediaTypeOf is a Content-Type without parameters.
func mediaTypeOf(h http.Header) string {
	mt, _, _ := strings.Cut(h.Get("Content-Type"), ";")
	return strings.TrimSpace(mt)
}
