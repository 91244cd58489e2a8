// Package sweep deletes cached content that no tag or digest pulled within
// a retention uses (Run). It reads the cache's records in the store and
// knows the cache's key layout; it serves nothing.
package sweep

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/pullthrough/pullthrough/internal/cache"
	"github.com/pullthrough/pullthrough/internal/field"
	"github.com/pullthrough/pullthrough/internal/oci"
)

// ObjectInfo describes one stored object in a listing. It is an alias of a
// struct literal so stores return the identical type without importing
// this package.
type ObjectInfo = struct {
	Key      string
	Size     int64
	Modified time.Time
}

// Lister is implemented by stores that can enumerate their objects (S3
// ListObjectsV2, a directory walk). Only the sweep needs it.
type Lister interface {
	// List yields the objects whose keys start with prefix; an error ends
	// the sequence.
	List(ctx context.Context, prefix string) iter.Seq2[ObjectInfo, error]
}

// Deleter is implemented by stores that can remove an object. Deleting a
// missing object is not an error.
type Deleter interface {
	Delete(ctx context.Context, key string) error
}

// MinRetention is the shortest retention a sweep accepts: use is recorded
// at most once a day (cache.UseEvery), so a pull may look up to a day older than
// it is, and a retention of a day could delete what was pulled an hour ago.
const MinRetention = 2 * cache.UseEvery

// Options configure one sweep.
type Options struct {
	// Retention: content not used by any tag or digest pulled within it
	// is deleted. At least MinRetention.
	Retention time.Duration
	// DryRun lists what would be deleted and deletes nothing.
	DryRun bool
	// Out, if set, gets one line per object deleted (or that would be).
	Out io.Writer
	// Now, if set, is the clock the retention is judged by (the cache's).
	Now func() time.Time
	// Log, if set, gets the sweep's summary line.
	Log *slog.Logger
	// Forget, if set, is told of each key deleted, so that the caller's
	// memos forget it.
	Forget func(key string)
	// MaxManifestSize is the largest manifest the mirror keeps, in bytes,
	// which bounds the records read (0: 4 MiB, the default).
	MaxManifestSize int64
}

// Report says what one sweep did and what it cost in store requests.
type Report struct {
	Listed     int   // objects listed (S3: one ListObjectsV2 per 1,000)
	Read       int   // records read (one GetObject each): tags, manifests, leases
	Deleted    int   // objects deleted, or that would be in a dry run
	BytesFreed int64 // their total size
	Kept       int   // tags, manifests and blobs kept
}

// Run deletes cached content that no tag or digest pulled within the
// retention uses. What is kept:
//   - tag records confirmed upstream or hit within the retention, and
//     manifest records (by digest) filled or hit within it: the roots;
//   - everything a root references, walking indexes to their manifests and
//     manifests to their config and layers;
//   - blobs written within the retention (a fill that just finished, or
//     one whose manifest is not cached yet) and blobs with a live fill
//     lease (a fill in progress; its object is not visible before it is
//     complete anyway).
//
// Everything else under tags/, manifests/ and blobs/ is deleted, with the
// repository links and referrers records of the deleted digests, and
// referrers records of subjects that are not cached (deadRecords). Records
// written before use was recorded count from their last write. A pull that
// starts while the sweep runs may, at worst, be redirected once to a blob
// deleted under it; its retry finds the blob missing and fills it again
// (every hit asks the store).
func Run(ctx context.Context, st Store, opt Options) (Report, error) {
	var rep Report
	l, ok := st.(Lister)
	d, ok2 := st.(Deleter)
	if !ok || !ok2 {
		return rep, errors.New("sweep: the store cannot list or delete objects")
	}
	if err := opt.Validate(); err != nil {
		return rep, fmt.Errorf("sweep: %w", err)
	}
	now := time.Now()
	if opt.Now != nil {
		now = opt.Now()
	}
	if opt.MaxManifestSize <= 0 {
		opt.MaxManifestSize = 4 << 20
	}
	records := cache.New(cache.Policy{}, opt.MaxManifestSize, st, opt.Log)
	s := &sweep{records: records, l: l, rep: &rep, cutoff: now.Add(-opt.Retention), now: now,
		manifests: map[digest.Digest][]sweptManifest{}, live: map[digest.Digest]bool{}, leased: map[string]bool{}}
	plan, err := s.plan(ctx)
	if err != nil {
		return rep, err
	}
	verb := "deleted"
	if opt.DryRun {
		verb = "would delete"
	} else {
		err := parallel(ctx, len(plan), func(i int) error {
			if err := d.Delete(ctx, plan[i].Key); err != nil {
				return fmt.Errorf("sweep: delete %s: %w", plan[i].Key, err)
			}
			return nil
		})
		if err != nil {
			return rep, err
		}
	}
	for _, o := range plan {
		if !opt.DryRun && opt.Forget != nil {
			opt.Forget(o.Key)
		}
		rep.Deleted++
		rep.BytesFreed += o.Size
		if opt.Out != nil {
			fmt.Fprintf(opt.Out, "%s %s (%d bytes)\n", verb, o.Key, o.Size)
		}
	}
	if opt.Log != nil {
		opt.Log.Info("sweep", "dry_run", opt.DryRun, "retention", opt.Retention.String(), "listed", rep.Listed,
			"read", rep.Read, "deleted", rep.Deleted, "bytes_freed", rep.BytesFreed, "kept", rep.Kept)
	}
	return rep, nil
}

// sweep is the state of one Sweep.
type sweep struct {
	records     *cache.Cache
	l           Lister
	rep         *Report
	now, cutoff time.Time
	// manifests holds every manifest record of a digest: the shared one
	// and those scoped to an upstream (cache.UpstreamManifestKey). A
	// digest is live or dead for all of them at once: keeping a scoped
	// record another upstream's root named costs a little space, never
	// an answer.
	manifests map[digest.Digest][]sweptManifest
	live      map[digest.Digest]bool
	leased    map[string]bool // blob keys with a live fill lease
}

type sweptManifest struct {
	info ObjectInfo
	refs []digest.Digest
}

// plan reads the store and returns what to delete: tags, manifests,
// blobs, then links and referrers records. Deletes run in parallel, so a
// sweep that fails half-way may leave any subset: that is safe, because
// nothing left behind is used and a hit on anything missing refills it.
func (s *sweep) plan(ctx context.Context) ([]ObjectInfo, error) {
	tags, roots, err := s.readTags(ctx)
	if err != nil {
		return nil, err
	}
	manifestRoots, err := s.readManifests(ctx)
	if err != nil {
		return nil, err
	}
	s.walk(append(roots, manifestRoots...))
	if err := s.readLeases(ctx); err != nil {
		return nil, err
	}
	condemned := map[digest.Digest]bool{}
	plan := append(tags, s.deadManifests(condemned)...)
	blobs, err := s.deadBlobs(ctx, condemned)
	if err != nil {
		return nil, err
	}
	plan = append(plan, blobs...)
	records, err := s.deadRecords(ctx, condemned)
	if err != nil {
		return nil, err
	}
	return append(plan, records...), nil
}

// readTags returns the tag records and tag lists not used within the
// retention, and the digests of the tags that were: roots.
func (s *sweep) readTags(ctx context.Context) (dead []ObjectInfo, roots []digest.Digest, err error) {
	// Under tags/ are tag records (…/_tag/<tag>) and cached tag lists
	// (…/_list), which only go when old: nothing references them.
	otherThanTag := func(o ObjectInfo) bool {
		if strings.Contains(o.Key, "/_tag/") {
			return false
		}
		if s.used(time.Time{}, o) {
			s.rep.Kept++
		} else {
			dead = append(dead, o)
		}
		return true
	}
	err = readEach(ctx, s, "tags/", otherThanTag, func(o ObjectInfo, tr *cache.Tag) {
		if s.used(tr.LastUse(), o) {
			roots = append(roots, tr.Digest)
			s.rep.Kept++
		} else {
			dead = append(dead, o)
		}
	})
	return dead, roots, err
}

// readManifests records every cached manifest and what it references in
// s.manifests, and returns those used within the retention: roots.
func (s *sweep) readManifests(ctx context.Context) (roots []digest.Digest, err error) {
	err = readEach(ctx, s, "manifests/", nil, func(o ObjectInfo, m *cache.Manifest) {
		dg, ok := manifestKeyDigest(o.Key)
		if !ok {
			return
		}
		s.manifests[dg] = append(s.manifests[dg], sweptManifest{info: o, refs: oci.ManifestRefs(m.Data)})
		if s.used(m.Used, o) {
			roots = append(roots, dg)
		}
	})
	return roots, err
}

// deadManifests returns the manifests no root reaches, by key, and adds
// their digests to condemned.
func (s *sweep) deadManifests(condemned map[digest.Digest]bool) []ObjectInfo {
	var dead []ObjectInfo
	for dg, ms := range s.manifests {
		for _, m := range ms {
			if s.live[dg] {
				s.rep.Kept++
				continue
			}
			dead = append(dead, m.info)
			condemned[dg] = true
		}
	}
	slices.SortFunc(dead, func(a, b ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	return dead
}

// deadBlobs lists blobs/ and returns those no root reaches, written before
// the retention and not being filled; it adds their digests to condemned.
func (s *sweep) deadBlobs(ctx context.Context, condemned map[digest.Digest]bool) ([]ObjectInfo, error) {
	var dead []ObjectInfo
	err := s.each(ctx, "blobs/", func(o ObjectInfo) error {
		dg, ok := cache.KeyDigest(o.Key, "blobs/")
		if !ok || s.live[dg] || !o.Modified.Before(s.cutoff) || s.leased[o.Key] {
			s.rep.Kept++
			return nil
		}
		dead = append(dead, o)
		condemned[dg] = true
		return nil
	})
	return dead, err
}

// deadRecords returns the repository links and referrers records of
// condemned digests, and the orphaned referrers records: those whose
// subject is no cached manifest, written before the retention (a request
// for any digest used to leave one; a younger one may belong to a subject
// cached since the manifests were listed).
func (s *sweep) deadRecords(ctx context.Context, condemned map[digest.Digest]bool) ([]ObjectInfo, error) {
	var dead []ObjectInfo
	for _, prefix := range []string{"links/", "referrers/"} {
		err := s.each(ctx, prefix, func(o ObjectInfo) error {
			dg, ok := cache.TrailingDigest(o.Key)
			orphan := prefix == "referrers/" && (!ok || s.manifests[dg] == nil) && o.Modified.Before(s.cutoff)
			if ok && condemned[dg] || orphan {
				dead = append(dead, o)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return dead, nil
}

// manifestKeyDigest parses a manifest record's key, shared
// (manifests/<alg>/<hex>) or scoped to an upstream
// (manifests/_upstream/<host>/<alg>/<hex>).
func manifestKeyDigest(key string) (digest.Digest, bool) {
	if rest, ok := strings.CutPrefix(key, "manifests/_upstream/"); ok {
		_, rest, ok = strings.Cut(rest, "/")
		if !ok {
			return "", false
		}
		return cache.KeyDigest(rest, "")
	}
	return cache.KeyDigest(key, "manifests/")
}

// used reports whether a record was used within the retention: its
// recorded use, or its last write when it has none.
func (s *sweep) used(at time.Time, o ObjectInfo) bool {
	if at.IsZero() {
		at = o.Modified
	}
	return !at.Before(s.cutoff)
}

// walk marks the roots and everything they reference as live.
func (s *sweep) walk(roots []digest.Digest) {
	for len(roots) > 0 {
		dg := roots[len(roots)-1]
		roots = roots[:len(roots)-1]
		if s.live[dg] {
			continue
		}
		s.live[dg] = true
		for _, m := range s.manifests[dg] {
			roots = append(roots, m.refs...)
		}
	}
}

// readLeases finds blobs being filled: a lease that has not expired, or
// one that cannot be read (a lease being written counts as live).
func (s *sweep) readLeases(ctx context.Context) error {
	return readEach(ctx, s, "leases/", nil, func(o ObjectInfo, lr *cache.LeaseRecord) {
		_, blob, ok := strings.Cut(strings.TrimPrefix(o.Key, "leases/"), "/")
		if ok && (lr.Owner == "" || cache.LeaseLive(*lr, s.now)) {
			s.leased[blob] = true
		}
	})
}

func (s *sweep) each(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	for o, err := range s.l.List(ctx, prefix) {
		if err != nil {
			return fmt.Errorf("sweep: list %s: %w", prefix, err)
		}
		s.rep.Listed++
		if err := fn(o); err != nil {
			return err
		}
	}
	return nil
}

// sweepWorkers is how many records a sweep reads, or objects it deletes,
// at once: S3 answers each in milliseconds, and a sweep of 100,000
// records must fit in a Lambda invocation (15 minutes).
const sweepWorkers = 16

// readEach lists prefix and reads its records, sweepWorkers at a time and
// 1,000 (a listing page) in memory at most; then use sees each object and
// its record, one at a time. Objects that skip (if set) takes are not read.
func readEach[T any](ctx context.Context, s *sweep, prefix string, skip func(ObjectInfo) bool, use func(ObjectInfo, *T)) error {
	var objs []ObjectInfo
	flush := func() error {
		recs := make([]T, len(objs))
		err := parallel(ctx, len(objs), func(i int) error { return s.read(ctx, objs[i].Key, &recs[i]) })
		if err != nil {
			return err
		}
		s.rep.Read += len(objs)
		for i, o := range objs {
			use(o, &recs[i])
		}
		objs = objs[:0]
		return nil
	}
	err := s.each(ctx, prefix, func(o ObjectInfo) error {
		if skip != nil && skip(o) {
			return nil
		}
		objs = append(objs, o)
		if len(objs) == 1000 {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

// parallel runs fn for 0..n-1, sweepWorkers at a time, and returns the
// first error (the rest of the work is skipped).
func parallel(ctx context.Context, n int, fn func(i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(n, sweepWorkers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					cancel(err)
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}

// read loads a JSON record. A record that vanished or cannot be parsed
// reads as the zero value: the sweep then judges it by its last write.
func (s *sweep) read(ctx context.Context, key string, v any) error {
	err := s.records.LoadJSON(ctx, key, v)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sweep: read %s: %w", key, err)
	}
	return nil
}

// Validate reports a Retention under MinRetention as a *field.Error for
// "Retention"; Run refuses such options.
func (o Options) Validate() error {
	if o.Retention < MinRetention {
		return field.Errorf("Retention", o.Retention, "want at least %s, got %s", field.Duration(MinRetention), field.Duration(o.Retention))
	}
	return nil
}

// Store is what a sweep reads records with; it must also be a Lister and
// a Deleter.
type Store = cache.Store
