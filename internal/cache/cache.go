// Package cache is the mirror's own state in the store: the key layout,
// the records kept there (records.go), the in-memory memos that save store
// round trips, the clock every cache decision is made by, and the pure
// policy that makes those decisions (policy.go). It does no upstream I/O
// and writes no responses: the serving side asks it what to keep and what
// is still good.
//
// Store layout (every key below a bucket's configured prefix):
//
//	blobs/<alg>/<hex>                          blob bytes
//	manifests/<alg>/<hex>                      Manifest whose digest hashes its exact bytes
//	manifests/_upstream/<host>/<alg>/<hex>     Manifest whose digest does not (schema 1)
//	tags/<host>/<name>/_tag/<tag>              Tag
//	tags/<host>/<name>/_list                   last good full tag list
//	referrers/<host>/<name>/_ref/<alg>/<hex>   Referrers
//	links/<host>/<name>/_digest/<alg>/<hex>    LinkRecord (links.go)
//	leases/<xx>/blobs/<alg>/<hex>              LeaseRecord (the fill engine's)
//	fills/failed/<alg>/<hex>                   FillFailure (the fill engine's)
package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/pullthrough/pullthrough/internal/oci"
)

// Store is what the cache needs of a storage backend: the proxy's Store
// without streamed writes. Not-found matches fs.ErrNotExist.
type Store interface {
	Stat(ctx context.Context, key string) (int64, error)
	Get(ctx context.Context, key string) (io.ReadCloser, int64, error)
	Put(ctx context.Context, key string, data []byte) error
}

// Cache is the records and memos over one store.
type Cache struct {
	store  Store
	log    *slog.Logger
	now    func() time.Time
	policy Policy
	// maxRecord bounds a JSON record read from the store: base64 in JSON
	// is 4/3 of the largest manifest plus a little.
	maxRecord int64

	manifests *Memo[string, Manifest] // by store key
	tags      *Memo[string, Tag]      // by store key
	tagLists  *Memo[string, [32]byte] // SHA-256 of each tag list in the store, by key
	links     *Memo[string, struct{}] // repository links known to exist, by store key
	presigned *Memo[string, string]   // presigned URLs, by method and key
}

// New builds the cache over store with policy, records of manifests of at
// most maxManifestSize bytes, and the real clock. A nil logger discards.
func New(policy Policy, maxManifestSize int64, store Store, log *slog.Logger) *Cache {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Cache{
		store: store, log: log, now: time.Now, policy: policy,
		maxRecord: 2*maxManifestSize + 4096,
		presigned: NewMemo[string, string](10000),
		manifests: NewMemo[string, Manifest](1024),
		tags:      NewMemo[string, Tag](10000),
		tagLists:  NewMemo[string, [32]byte](10000),
		links:     NewMemo[string, struct{}](100000),
	}
}

// Now is the cache's clock.
func (c *Cache) Now() time.Time { return c.now() }

// SetClock replaces the clock (tests). Call it before the cache is used.
func (c *Cache) SetClock(now func() time.Time) { c.now = now }

// Policy is the cache's policy.
func (c *Cache) Policy() Policy { return c.policy }

// BlobKey is where a blob's bytes are.
func BlobKey(d digest.Digest) string {
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

// ManifestKey is where a manifest whose digest is the hash of its exact
// bytes is kept, for every upstream: nobody can make other bytes hash to
// it, so whichever upstream served them, they are the content the digest
// names. A record there that does not hash to its key is not read.
func ManifestKey(d digest.Digest) string {
	return "manifests/" + d.Algorithm().String() + "/" + d.Encoded()
}

// UpstreamManifestKey is where a manifest whose digest is not the hash of
// its bytes is kept: a signed schema 1 manifest, addressed by the hash of
// a payload that fields of its own body define (oci.ManifestDigests). Such
// a digest proves only that the body carries that payload, so an upstream
// can craft a body for any digest it likes, another registry's image's
// included; the record is therefore scoped to the upstream that served it,
// and read only for that upstream. "_upstream" cannot be a digest
// algorithm (they start with a letter or digit).
func UpstreamManifestKey(host string, d digest.Digest) string {
	return "manifests/_upstream/" + host + "/" + d.Algorithm().String() + "/" + d.Encoded()
}

// HashesExactly reports whether m's digest is the hash of its exact bytes.
func (m Manifest) HashesExactly() bool {
	return m.Digest.Validate() == nil && m.Digest.Algorithm().FromBytes(m.Data) == m.Digest
}

// manifestKeyFor is where m, served by host, is kept.
func manifestKeyFor(host string, m Manifest) string {
	if m.HashesExactly() {
		return ManifestKey(m.Digest)
	}
	return UpstreamManifestKey(host, m.Digest)
}

// TagKey scopes tags by upstream host. "_tag" cannot be a repository path
// component (they start with a letter or digit), so a repository and a tag
// never share a key.
func TagKey(host, name, tag string) string {
	return "tags/" + host + "/" + name + "/_tag/" + tag
}

// TagListKey is where the last good unpaginated tag list of a repository is
// kept for stale serving.
func TagListKey(host, name string) string {
	return "tags/" + host + "/" + name + "/_list"
}

func ReferrersKey(host, name string, d digest.Digest) string {
	return "referrers/" + host + "/" + name + "/_ref/" + d.Algorithm().String() + "/" + d.Encoded()
}

// LinkKey is the store key of a link. "_digest" cannot be a repository path
// component, so no repository's links collide with another's.
func LinkKey(host, name string, d digest.Digest) string {
	return "links/" + host + "/" + name + "/_digest/" + d.Algorithm().String() + "/" + d.Encoded()
}

// LeaseKey is where a blob's fill lease lives: under leases/ (the only
// prefix the IAM role may delete in, infra/terraform/iam.tf), spread over
// 256 sub-prefixes by the digest's first two hex characters so that S3
// request-rate partitions are not all on one prefix.
func LeaseKey(d digest.Digest) string {
	return "leases/" + d.Encoded()[:2] + "/" + BlobKey(d)
}

func FillFailureKey(d digest.Digest) string {
	return "fills/failed/" + d.Algorithm().String() + "/" + d.Encoded()
}

// memoManifestMax is the largest manifest kept in memory; typical ones are
// a few KiB, and the memo holds at most 1024 of them.
const memoManifestMax = 64 << 10

// manifestMemoFor is how long a manifest stays in the memo. Manifests are
// immutable; the bound only lets a deletion behind the mirror's back be
// noticed.
const manifestMemoFor = time.Hour

// LoadManifest reads the manifest d for upstream host: the shared record
// if its bytes hash to d, else the record host itself served.
func (c *Cache) LoadManifest(ctx context.Context, host string, d digest.Digest) (Manifest, error) {
	m, err := c.loadManifest(ctx, ManifestKey(d), d, true)
	if errors.Is(err, fs.ErrNotExist) {
		m, err = c.loadManifest(ctx, UpstreamManifestKey(host, d), d, false)
	}
	return m, err
}

func (c *Cache) loadManifest(ctx context.Context, key string, d digest.Digest, exact bool) (Manifest, error) {
	if m, ok := c.manifests.Get(key, c.now(), manifestMemoFor); ok {
		return m, nil
	}
	var m Manifest
	if err := c.LoadJSON(ctx, key, &m); err != nil {
		return Manifest{}, err
	}
	// A record that does not hash to its key is damage, not content; in
	// the shared layout only the exact bytes' hash counts (see ManifestKey).
	if m.Digest != d || (exact && !m.HashesExactly()) ||
		!slices.Contains(oci.ManifestDigests(d.Algorithm(), m.MediaType, m.Data), d) {
		return Manifest{}, fmt.Errorf("manifest record %s is corrupt: %w", key, fs.ErrNotExist)
	}
	if len(m.Data) <= memoManifestMax {
		c.manifests.Put(key, m, c.now())
	}
	return m, nil
}

// SaveManifest stores m as upstream host served it (see ManifestKey and
// UpstreamManifestKey for where).
func (c *Cache) SaveManifest(ctx context.Context, host string, m Manifest) error {
	return c.SaveJSON(ctx, manifestKeyFor(host, m), m)
}

// LoadTag reads a tag record, from memory while it is fresh (a stale one
// is re-read: another instance may have revalidated it meanwhile).
func (c *Cache) LoadTag(ctx context.Context, host, key string) (Tag, Manifest, error) {
	tr, ok := c.tags.Get(key, c.now(), c.policy.ManifestTTL)
	if !ok || !c.policy.Fresh(tr.Checked, c.now()) {
		if err := c.LoadJSON(ctx, key, &tr); err != nil {
			return tr, Manifest{}, err
		}
		c.tags.Put(key, tr, c.now())
	}
	m, err := c.LoadManifest(ctx, host, tr.Digest)
	return tr, m, err
}

// TouchTag records that the upstream confirmed a tag just now. A failure
// only costs an earlier revalidation next time, so it is logged, not fatal.
func (c *Cache) TouchTag(ctx context.Context, key string, tr Tag, etag string) {
	tr.Checked = c.now()
	if etag != "" {
		tr.ETag = etag
	}
	if err := c.SaveTag(ctx, key, tr); err != nil {
		c.log.Warn("could not record revalidation", "cause", err.Error())
	}
}

func (c *Cache) SaveTag(ctx context.Context, key string, tr Tag) error {
	c.tags.Put(key, tr, c.now())
	return c.SaveJSON(ctx, key, tr)
}

func (c *Cache) LoadJSON(ctx context.Context, key string, v any) error {
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

func (c *Cache) SaveJSON(ctx context.Context, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	// Storing must finish even if the client hangs up: the bytes are
	// verified and the next client wants them.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := c.store.Put(ctx, key, data); err != nil {
		return oci.ErrUnavailable.With("cache storage unavailable", fmt.Errorf("put %s: %w", key, err))
	}
	return nil
}

// PresignedURL returns the URL presigned for memoKey (method and key) while
// it is still worth handing out (Policy.PresignReuse).
func (c *Cache) PresignedURL(memoKey string) (string, bool) {
	return c.presigned.Get(memoKey, c.now(), c.policy.PresignReuse())
}

// NotePresigned remembers a URL presigned for memoKey just now.
func (c *Cache) NotePresigned(memoKey, url string) { c.presigned.Put(memoKey, url, c.now()) }

// Forget drops what this process remembers about a deleted object.
func (c *Cache) Forget(key string) {
	c.manifests.Del(key)
	c.tags.Del(key)
	c.links.Del(key)
}
