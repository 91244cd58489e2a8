package proxy

import (
	"context"
	"encoding/json"
	"net/http"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullthrough/pullthrough/internal/cache"
	"github.com/pullthrough/pullthrough/internal/oci"
)

// serveReferrers answers the OCI referrers API. It asks the upstream's
// referrers API and, where the upstream has none, reads the tag-schema
// fallback (<alg>-<hex> tag); answers are cached like tags and served stale
// when the upstream fails. A paged upstream list is read whole (upstream
// Client.Referrers), so the artifactType filter applies to all of it and
// the client gets one answer without a Link.
func (p *Proxy) serveReferrers(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route) error {
	artifactType := r.URL.Query().Get("artifactType")
	if len(artifactType) > 255 {
		return oci.ErrQueryInvalid.With("artifactType too long", nil)
	}
	key := cache.ReferrersKey(rt.up.Host(), rt.name, rt.digest)
	var cached cache.Referrers
	haveCache := p.cache.LoadJSON(ctx, key, &cached) == nil
	result := cacheHit
	index := cached.Index
	if !haveCache || !p.cache.Policy().Fresh(cached.Checked, p.now()) {
		fresh, err := rt.up.Referrers(ctx, rt.name, rt.digest, p.cfg.MaxManifestSize)
		err = fromUpstream(err, oci.ErrManifestUnknown)
		switch {
		case err == nil:
			index, result = fresh, cacheMiss
			// Kept only for a subject the mirror holds (links.go).
			if p.holdsSubject(ctx, rt) {
				if err := p.cache.SaveJSON(ctx, key, cache.Referrers{Checked: p.now(), Index: fresh}); err != nil {
					p.log.Warn("could not cache referrers", "cause", err.Error())
				}
			}
		case haveCache:
			p.log.Warn("referrers refresh failed, serving stale", "cause", err.Error())
			result = cacheStale
		default:
			return err
		}
	}
	var idx oci.ReferrersIndex
	if err := json.Unmarshal(index, &idx); err != nil {
		return oci.ErrUnavailable.With("upstream referrers index unreadable", err)
	}
	if artifactType != "" {
		kept := []json.RawMessage{}
		for _, m := range idx.Manifests {
			var d ocispec.Descriptor
			if oci.DecodeSpec(m, &d) == nil && d.ArtifactType == artifactType {
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
	h.Set(headerCache, result)
	setLength(h, int64(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
	return nil
}
