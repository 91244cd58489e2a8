package cache

import (
	"context"
	"errors"
	"io/fs"
	"sync"
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
//
// Bounded work: one manifest answer writes at most MaxLinks link records
// (the manifest, its distinct references and, within what is left, the
// references of an index's cached children), linkWorkers at a time. A
// manifest with more than MaxManifestRefs distinct references is not
// stored or linked at all (ManifestRefsOver): the serving side refuses it.
// What the budget leaves unlinked (children's references past it) is
// confirmed upstream when first asked for, as content cached before links
// existed is.

// MaxManifestRefs is the most distinct digests one manifest may reference
// for the mirror to keep it: far above any runnable image (overlay file
// systems stop at about 128 layers, Docker at 125) or real index, far below
// the ~27,000 a 4 MiB manifest can list.
const MaxManifestRefs = 1000

// MaxLinks is the most link records one manifest answer writes.
const MaxLinks = MaxManifestRefs + 1

// linkWorkers is how many link records are written at once.
const linkWorkers = 16

// DistinctRefs is a manifest's references, each once, in order.
func DistinctRefs(data []byte) []digest.Digest {
	seen := map[digest.Digest]bool{}
	var out []digest.Digest
	for _, d := range oci.ManifestRefs(data) {
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

// ManifestRefsOver reports the number of distinct references of m when it
// is more than MaxManifestRefs.
func ManifestRefsOver(m Manifest) (int, bool) {
	n := len(DistinctRefs(m.Data))
	return n, n > MaxManifestRefs
}

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

// Link records that each d belongs to the repository, linkWorkers at a
// time. It is idempotent and costs nothing for links this process already
// knows. A failure is logged, not returned: the content was verified, and
// a missing link only costs one upstream HEAD later.
func (c *Cache) Link(ctx context.Context, host, name string, ds ...digest.Digest) {
	var todo []string
	seen := map[string]bool{}
	for _, d := range ds {
		key := LinkKey(host, name, d)
		if _, ok := c.links.Get(key, c.now(), linkedFor); ok || seen[key] {
			continue
		}
		seen[key] = true
		todo = append(todo, key)
	}
	next := make(chan string)
	var wg sync.WaitGroup
	for range min(len(todo), linkWorkers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for key := range next {
				if err := c.SaveJSON(ctx, key, LinkRecord{Linked: c.now().UTC()}); err != nil {
					c.log.Warn("could not record repository link", "repository", name, "key", key, "cause", err.Error())
					continue
				}
				c.links.Put(key, struct{}{}, c.now())
			}
		}()
	}
	for _, key := range todo {
		next <- key
	}
	close(next)
	wg.Wait()
}

// LinkManifest links a manifest fetched (or confirmed) for a repository
// and everything it references, at most MaxLinks records. For an index,
// cached children's references are linked too while the budget lasts, so
// a child cached for another repository does not cost an upstream HEAD per
// layer. The caller has refused a manifest over MaxManifestRefs.
func (c *Cache) LinkManifest(ctx context.Context, host, name string, m Manifest) {
	refs := DistinctRefs(m.Data)
	ds := append([]digest.Digest{m.Digest}, refs...)
	if oci.IsIndex(m.MediaType) {
		for _, child := range refs {
			if len(ds) >= MaxLinks {
				break
			}
			// Index children are schema 2 or OCI manifests: the shared
			// record only (a miss costs one GET, not two).
			if cm, err := c.loadManifest(ctx, ManifestKey(child), child, true); err == nil {
				ds = append(ds, DistinctRefs(cm.Data)...)
			}
		}
	}
	c.Link(ctx, host, name, ds[:min(len(ds), MaxLinks)]...)
}
