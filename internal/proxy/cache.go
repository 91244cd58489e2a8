package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
)

// cache is the mirror's own state: the store's key layout, the records kept
// there (records.go), the in-memory memos that save store round trips, and
// the clock every cache decision is made by (cachepolicy.go). The protocol
// code (manifest.go, blob.go, ...) does the upstream I/O and asks the cache
// what to keep and what is still good.
//
// Store layout (every key below a bucket's configured prefix):
//
//	blobs/<alg>/<hex>                          blob bytes
//	manifests/<alg>/<hex>                      storedManifest
//	tags/<host>/<name>/_tag/<tag>              tagRecord
//	tags/<host>/<name>/_list                   last good full tag list
//	referrers/<host>/<name>/_ref/<alg>/<hex>   referrersRecord
//	links/<host>/<name>/_digest/<alg>/<hex>    linkRecord (links.go)
//	leases/<xx>/blobs/<alg>/<hex>              leaseRecord (lease.go)
//	fills/failed/<alg>/<hex>                   fillFailure (fillfail.go)
type cache struct {
	store  Store
	log    *slog.Logger
	now    func() time.Time
	policy cachePolicy
	// maxRecord bounds a JSON record read from the store: base64 in JSON
	// is 4/3 of the largest manifest plus a little.
	maxRecord int64

	manifests     *memo[digest.Digest, storedManifest]
	tags          *memo[string, tagRecord] // by store key
	headlessHosts *memo[string, struct{}]  // upstream hosts without a usable manifest HEAD
	tagLists      *memo[string, [32]byte]  // SHA-256 of each tag list in the store, by key
	links         *memo[string, struct{}]  // repository links known to exist, by store key
	absent        *memo[string, struct{}]  // blobs the upstream answered 404 for, by fillKey
	presigned     *memo[string, string]    // presigned URLs, by method and key
}

// newCache builds the cache over store with cfg's policy (defaults already
// applied) and the real clock.
func newCache(cfg Config, store Store, log *slog.Logger) *cache {
	return &cache{
		store: store, log: log, now: time.Now,
		policy:        cachePolicy{ManifestTTL: cfg.ManifestTTL, DeniedGrace: cfg.DeniedGrace, PresignTTL: cfg.PresignTTL},
		maxRecord:     2*cfg.MaxManifestSize + 4096,
		presigned:     newMemo[string, string](10000),
		manifests:     newMemo[digest.Digest, storedManifest](1024),
		tags:          newMemo[string, tagRecord](10000),
		headlessHosts: newMemo[string, struct{}](256),
		tagLists:      newMemo[string, [32]byte](10000),
		links:         newMemo[string, struct{}](100000),
		absent:        newMemo[string, struct{}](10000),
	}
}

func blobKey(d digest.Digest) string {
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded()
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

// tagListKey is where the last good unpaginated tag list of a repository is
// kept for stale serving.
func tagListKey(host, name string) string {
	return "tags/" + host + "/" + name + "/_list"
}

func referrersKey(host, name string, d digest.Digest) string {
	return "referrers/" + host + "/" + name + "/_ref/" + d.Algorithm().String() + "/" + d.Encoded()
}

// linkKey is the store key of a link. "_digest" cannot be a repository path
// component, so no repository's links collide with another's.
func linkKey(host, name string, d digest.Digest) string {
	return "links/" + host + "/" + name + "/_digest/" + d.Algorithm().String() + "/" + d.Encoded()
}

// leaseKey is where a blob's fill lease lives: under leases/ (the only
// prefix the IAM role may delete in, infra/terraform/iam.tf), spread over
// 256 sub-prefixes by the digest's first two hex characters so that S3
// request-rate partitions are not all on one prefix.
func leaseKey(d digest.Digest) string {
	return "leases/" + d.Encoded()[:2] + "/" + blobKey(d)
}

func fillFailureKey(d digest.Digest) string {
	return "fills/failed/" + d.Algorithm().String() + "/" + d.Encoded()
}

// memoManifestMax is the largest manifest kept in memory; typical ones are
// a few KiB, and the memo holds at most 1024 of them.
const memoManifestMax = 64 << 10

// manifestMemoFor is how long a manifest stays in the memo. Manifests are
// immutable; the bound only lets a deletion behind the mirror's back be
// noticed.
const manifestMemoFor = time.Hour

func (c *cache) loadManifest(ctx context.Context, d digest.Digest) (storedManifest, error) {
	if m, ok := c.manifests.get(d, c.now(), manifestMemoFor); ok {
		return m, nil
	}
	m, err := c.loadManifestFromStore(ctx, d)
	if err == nil && len(m.Data) <= memoManifestMax {
		c.manifests.put(d, m, c.now())
	}
	return m, err
}

func (c *cache) loadManifestFromStore(ctx context.Context, d digest.Digest) (storedManifest, error) {
	var m storedManifest
	if err := c.loadJSON(ctx, manifestKey(d), &m); err != nil {
		return m, err
	}
	// A record that does not hash to its key is damage, not content.
	if m.Digest != d || !slices.Contains(manifestDigests(d.Algorithm(), m.MediaType, m.Data), d) {
		return storedManifest{}, fmt.Errorf("manifest record %s is corrupt: %w", d, fs.ErrNotExist)
	}
	return m, nil
}

func (c *cache) saveManifest(ctx context.Context, m storedManifest) error {
	return c.saveJSON(ctx, manifestKey(m.Digest), m)
}

// loadTag reads a tag record, from memory while it is fresh (a stale one
// is re-read: another instance may have revalidated it meanwhile).
func (c *cache) loadTag(ctx context.Context, key string) (tagRecord, storedManifest, error) {
	tr, ok := c.tags.get(key, c.now(), c.policy.ManifestTTL)
	if !ok || !c.policy.fresh(tr.Checked, c.now()) {
		if err := c.loadJSON(ctx, key, &tr); err != nil {
			return tr, storedManifest{}, err
		}
		c.tags.put(key, tr, c.now())
	}
	m, err := c.loadManifest(ctx, tr.Digest)
	return tr, m, err
}

// touchTag records that the upstream confirmed a tag just now. A failure
// only costs an earlier revalidation next time, so it is logged, not fatal.
func (c *cache) touchTag(ctx context.Context, key string, tr tagRecord, etag string) {
	tr.Checked = c.now()
	if etag != "" {
		tr.ETag = etag
	}
	if err := c.saveTag(ctx, key, tr); err != nil {
		c.log.Warn("could not record revalidation", "cause", err.Error())
	}
}

func (c *cache) saveTag(ctx context.Context, key string, tr tagRecord) error {
	c.tags.put(key, tr, c.now())
	return c.saveJSON(ctx, key, tr)
}

// headless reports whether host's manifest HEAD is remembered as unusable
// (see headlessFor).
func (c *cache) headless(host string) bool {
	_, ok := c.headlessHosts.get(host, c.now(), headlessFor)
	return ok
}

// noteHeadless remembers, per upstream and for headlessFor, that its
// manifest HEAD is not to be trusted, so revalidation goes straight to GET.
func (c *cache) noteHeadless(host string, status int) {
	if !c.headless(host) {
		c.log.Info("upstream has no usable manifest HEAD, revalidating with conditional GET", "upstream", host, "head_status", status)
	}
	c.headlessHosts.put(host, struct{}{}, c.now())
}

func (c *cache) loadJSON(ctx context.Context, key string, v any) error {
	rc, _, err := c.store.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, c.maxRecord))
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("record %s unreadable (%v): %w", key, err, fs.ErrNotExist)
	}
	return nil
}

func (c *cache) saveJSON(ctx context.Context, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	// Storing must finish even if the client hangs up: the bytes are
	// verified and the next client wants them.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := c.store.Put(ctx, key, data); err != nil {
		return ErrUnavailable.With("cache storage unavailable", fmt.Errorf("put %s: %w", key, err))
	}
	return nil
}

// presignedURL returns the URL presigned for memoKey (method and key) while
// it is still worth handing out (cachePolicy.presignReuse).
func (c *cache) presignedURL(memoKey string) (string, bool) {
	return c.presigned.get(memoKey, c.now(), c.policy.presignReuse())
}

// forget drops what this process remembers about a deleted object.
func (c *cache) forget(key string) {
	if dg, ok := keyDigest(key, "manifests/"); ok {
		c.manifests.del(dg)
	}
	c.tags.del(key)
	c.links.del(key)
}
