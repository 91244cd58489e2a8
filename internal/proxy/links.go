package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullthrough/pullthrough/internal/cache"
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
// process (the memo), one Stat per link per process lifetime on hits. The
// links' records and memo are package cache's; this is the asking.

// checkLinkedManifest lets a cached manifest be served under the route's
// repository: linked already, or confirmed upstream now (HEAD; a GET by
// digest where the upstream has no usable manifest HEAD) and then linked.
func (p *Proxy) checkLinkedManifest(ctx context.Context, up *Upstream, name string, m cache.Manifest) error {
	ok, err := p.cache.Linked(ctx, up.Host(), name, m.Digest)
	if err != nil || ok {
		return err
	}
	if err := refsWithinCap(m); err != nil {
		return err // cached before the cap existed
	}
	if err := p.confirmManifest(ctx, up, name, m.Digest); err != nil {
		return err
	}
	p.cache.LinkManifest(ctx, up.Host(), name, m)
	return nil
}

func (p *Proxy) confirmManifest(ctx context.Context, up *Upstream, name string, d digest.Digest) error {
	if !up.Facts().Headless {
		status, got, err := up.HeadManifest(ctx, name, d.String())
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
	_, err := up.GetManifest(ctx, name, d.String(), "", p.cfg.MaxManifestSize)
	if err = fromUpstream(err, oci.ErrManifestUnknown); err != nil {
		if errors.Is(err, oci.ErrDenied) || errors.Is(err, oci.ErrManifestUnknown) {
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
	size, err := p.fills.Confirm(ctx, fillBlob(rt))
	switch stored := (*oci.Error)(nil); {
	case err == nil && size >= 0:
		p.cache.Link(ctx, rt.up.Host(), rt.name, rt.digest) // confirmed just now
		return nil
	case err == nil || errors.As(err, &stored):
		return err // linked already, or the store failed
	}
	err = fromUpstream(err, oci.ErrBlobUnknown)
	if errors.Is(err, oci.ErrDenied) || errors.Is(err, oci.ErrBlobUnknown) {
		return err
	}
	return errUnconfirmed(rt.name, "upstream registry unavailable", err)
}

// refsWithinCap refuses a manifest that references more distinct digests
// than the mirror links for one manifest (cache.MaxManifestRefs): each
// would cost a store write in this request. DENIED, as a blob over the
// size cap is: the upstream's content is fine, the mirror will not keep it.
func refsWithinCap(m cache.Manifest) error {
	if n, over := cache.ManifestRefsOver(m); over {
		return oci.ErrDenied.With(fmt.Sprintf("manifest %s references %d blobs and manifests; this mirror keeps manifests of at most %d", m.Digest, n, cache.MaxManifestRefs), nil)
	}
	return nil
}

// holdsSubject reports whether the route's digest is a manifest the
// mirror holds for the route's repository (linked to it), so that a
// referrers answer for it is worth a store record: a referrers request for
// a random digest writes nothing.
func (p *Proxy) holdsSubject(ctx context.Context, rt route) bool {
	ok, err := p.cache.Linked(ctx, rt.up.Host(), rt.name, rt.digest)
	return err == nil && ok
}

// errUnconfirmed: the content is cached, but for another repository, and
// the upstream could not be asked whether this one has it.
func errUnconfirmed(name, why string, cause error) *oci.Error {
	return oci.ErrUnavailable.With(fmt.Sprintf("cached content was not fetched for repository %s and the upstream could not confirm it: %s", name, why), cause).After(10 * time.Second)
}
