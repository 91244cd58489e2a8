package cache

import (
	"context"
	"errors"
	"io/fs"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/pullthrough/pullthrough/internal/oci"
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
func (c *Cache) Linked(ctx context.Context, host, name string, d digest.Digest) (bool, error) {
	key := LinkKey(host, name, d)
	if _, ok := c.links.Get(key, c.now(), linkedFor); ok {
		return true, nil
	}
	_, err := c.store.Stat(ctx, key)
	switch {
	case err == nil:
		c.links.Put(key, struct{}{}, c.now())
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, oci.ErrUnavailable.With("cache storage unavailable", err)
	}
}

// link records that d belongs to the repository. It is idempotent and
// costs nothing when this process already knows the link. A failure is
// logged, not returned: the content was verified, and a missing link only
// costs one upstream HEAD later.
func (c *Cache) Link(ctx context.Context, host, name string, ds ...digest.Digest) {
	for _, d := range ds {
		key := LinkKey(host, name, d)
		if _, ok := c.links.Get(key, c.now(), linkedFor); ok {
			continue
		}
		if err := c.SaveJSON(ctx, key, LinkRecord{Linked: c.now().UTC()}); err != nil {
			c.log.Warn("could not record repository link", "repository", name, "digest", d.String(), "cause", err.Error())
			continue
		}
		c.links.Put(key, struct{}{}, c.now())
	}
}

// LinkManifest links a manifest fetched (or confirmed) for a repository
// and everything it references. For an index, cached children's references
// are linked too, so a child cached for another repository does not cost
// an upstream HEAD per layer.
func (c *Cache) LinkManifest(ctx context.Context, host, name string, m Manifest) {
	refs := oci.ManifestRefs(m.Data)
	c.Link(ctx, host, name, append([]digest.Digest{m.Digest}, refs...)...)
	if !oci.IsIndex(m.MediaType) {
		return
	}
	for _, child := range refs {
		if cm, err := c.LoadManifest(ctx, host, child); err == nil {
			c.Link(ctx, host, name, oci.ManifestRefs(cm.Data)...)
		}
	}
}
