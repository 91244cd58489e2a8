package proxy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Repository links. The cache holds manifests and blobs by digest alone, so
// without a check a digest fetched for one repository would be served under
// any other the mirror allows: a denied repository's image by digest under
// an allowed name, or an upstream repository that never had it. A link
// records that the upstream served (or confirmed) a digest for one
// repository of one upstream; content is served under a repository only
// through a link. This is what distribution's storage does with its
// per-repository _layers and _manifests link files
// (registry/storage/linkedblobstore.go), which are why a registry answers
// BLOB_UNKNOWN for a blob pushed only to another repository.
//
// A link is created when a manifest is fetched from the upstream for a
// repository, for the manifest and everything it references (config,
// layers, an index's children and, if they are cached, their references):
// the upstream only accepts a manifest whose references exist in that
// repository, so a warm pull costs no upstream request. A blob filled for
// a repository is linked to it. Content that is cached but not linked
// (fetched for another repository, or cached before links existed) is
// confirmed with one HEAD on the upstream for the requested repository
// (free of Docker Hub's pull count), then linked; a 401/403 there is DENIED,
// a 404 is unknown, and an unreachable upstream is UNAVAILABLE: the mirror
// does not serve what it cannot vouch for.
//
// Cost: at most one small PUT per (upstream, repository, digest) per
// process (the memo), one Stat per link per process lifetime on hits.

// linkedFor is how long a link stays in the memo. Links are never removed
// by the mirror; the memo only bounds how long a bucket lifecycle rule
// that removed one goes unnoticed by a running process.
const linkedFor = 24 * time.Hour

// linked reports whether d is linked to the route's repository.
func (c *cache) linked(ctx context.Context, host, name string, d digest.Digest) (bool, error) {
	key := linkKey(host, name, d)
	if _, ok := c.links.get(key, c.now(), linkedFor); ok {
		return true, nil
	}
	_, err := c.store.Stat(ctx, key)
	switch {
	case err == nil:
		c.links.put(key, struct{}{}, c.now())
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, ErrUnavailable.With("cache storage unavailable", err)
	}
}

// link records that d belongs to the repository. It is idempotent and
// costs nothing when this process already knows the link. A failure is
// logged, not returned: the content was verified, and a missing link only
// costs one upstream HEAD later.
func (c *cache) link(ctx context.Context, host, name string, ds ...digest.Digest) {
	for _, d := range ds {
		key := linkKey(host, name, d)
		if _, ok := c.links.get(key, c.now(), linkedFor); ok {
			continue
		}
		if err := c.saveJSON(ctx, key, linkRecord{Linked: c.now().UTC()}); err != nil {
			c.log.Warn("could not record repository link", "repository", name, "digest", d.String(), "cause", errString(err))
			continue
		}
		c.links.put(key, struct{}{}, c.now())
	}
}

// linkManifest links a manifest fetched (or confirmed) for a repository
// and everything it references. For an index, cached children's references
// are linked too, so a child cached for another repository does not cost
// an upstream HEAD per layer.
func (c *cache) linkManifest(ctx context.Context, host, name string, m storedManifest) {
	refs := manifestRefs(m.Data)
	c.link(ctx, host, name, append([]digest.Digest{m.Digest}, refs...)...)
	if !isIndex(m.MediaType) {
		return
	}
	for _, child := range refs {
		if cm, err := c.loadManifest(ctx, child); err == nil {
			c.link(ctx, host, name, manifestRefs(cm.Data)...)
		}
	}
}

func isIndex(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageIndex || mediaType == mediaDockerList
}

// manifestRefs lists the digests a manifest references: an image's config
// and layers, an index's manifests, a schema 1 manifest's fsLayers. A
// subject is not included: the upstream does not require it to exist.
// Invalid digests are skipped.
func manifestRefs(data []byte) []digest.Digest {
	var m struct {
		ocispec.Manifest                      // an image: config and layers
		Manifests        []ocispec.Descriptor `json:"manifests"` // an index
		// Docker schema 1 (distribution docs/content/spec/deprecated-schema-v1.md)
		// lists its layers as fsLayers[].blobSum, which image-spec has no type for.
		FSLayers []struct {
			BlobSum digest.Digest `json:"blobSum"`
		} `json:"fsLayers"`
	}
	if decodeSpec(data, &m) != nil {
		return nil
	}
	all := []digest.Digest{m.Config.Digest}
	for _, d := range append(m.Layers, m.Manifests...) {
		all = append(all, d.Digest)
	}
	for _, l := range m.FSLayers {
		all = append(all, l.BlobSum)
	}
	var out []digest.Digest
	for _, d := range all {
		if d.Validate() == nil {
			out = append(out, d)
		}
	}
	return out
}

// checkLinkedManifest lets a cached manifest be served under the route's
// repository: linked already, or confirmed upstream now (HEAD; a GET by
// digest where the upstream has no usable manifest HEAD) and then linked.
func (p *Proxy) checkLinkedManifest(ctx context.Context, up *Upstream, name string, m storedManifest) error {
	ok, err := p.cache.linked(ctx, up.Host(), name, m.Digest)
	if err != nil || ok {
		return err
	}
	if err := p.confirmManifest(ctx, up, name, m.Digest); err != nil {
		return err
	}
	p.cache.linkManifest(ctx, up.Host(), name, m)
	return nil
}

func (p *Proxy) confirmManifest(ctx context.Context, up *Upstream, name string, d digest.Digest) error {
	if up.backingOff(p.now()) {
		return errUnconfirmed(name, "upstream asked the mirror to back off", nil)
	}
	if !p.cache.headless(up.Host()) {
		status, got, err := p.headManifest(ctx, route{up: up, name: name, tag: d.String()})
		switch {
		case err != nil:
			return errUnconfirmed(name, "upstream registry unreachable", err)
		case status == http.StatusOK && (got == d || got == ""):
			return nil
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			// Might be a registry refusing HEAD only: a GET decides.
		case status == http.StatusTooManyRequests || status >= 500:
			return errUnconfirmed(name, "upstream registry unavailable", fmt.Errorf("upstream answered %d", status))
		}
	}
	// The GET verifies the bytes against d; its result is not stored (the
	// cache has them already).
	_, _, err := p.fetchManifest(ctx, up, name, d.String())
	if err != nil {
		if errors.Is(err, ErrDenied) || errors.Is(err, ErrManifestUnknown) {
			return err
		}
		return errUnconfirmed(name, "upstream registry unavailable", err)
	}
	return nil
}

// checkLinkedBlob lets a cached blob be served under the route's
// repository: linked already, or confirmed with the upstream's blob HEAD
// (a one-byte ranged GET where HEAD is refused) and then linked.
func (p *Proxy) checkLinkedBlob(ctx context.Context, rt route) error {
	ok, err := p.cache.linked(ctx, rt.up.Host(), rt.name, rt.digest)
	if err != nil || ok {
		return err
	}
	if _, err := p.headUpstreamBlob(ctx, rt); err != nil {
		if errors.Is(err, ErrDenied) || errors.Is(err, ErrBlobUnknown) {
			return err
		}
		return errUnconfirmed(rt.name, "upstream registry unavailable", err)
	}
	p.cache.link(ctx, rt.up.Host(), rt.name, rt.digest)
	return nil
}

// errUnconfirmed: the content is cached, but for another repository, and
// the upstream could not be asked whether this one has it.
func errUnconfirmed(name, why string, cause error) *Error {
	return ErrUnavailable.With(fmt.Sprintf("cached content was not fetched for repository %s and the upstream could not confirm it: %s", name, why), cause).After(10 * time.Second)
}
