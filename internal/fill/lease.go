package fill

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/pullthrough/pullthrough/internal/cache"
)

// Leaser is implemented by stores with conditional writes (S3's
// If-None-Match and If-Match, link(2) on a file system). The proxy uses it
// for fill leases, so that separate processes sharing a store (Lambda
// instances) fetch each missing blob from upstream once. Versions are
// opaque (S3 ETags). An operation whose condition does not hold fails with
// an error matching fs.ErrExist, or fs.ErrNotExist if the object is gone.
type Leaser interface {
	// PutIfAbsent stores data at key unless an object is there.
	PutIfAbsent(ctx context.Context, key string, data []byte) (version string, err error)
	// ReadVersion returns the small object at key and its version.
	ReadVersion(ctx context.Context, key string) (data []byte, version string, err error)
	// ReplaceIf overwrites the object at key if it is still at version.
	ReplaceIf(ctx context.Context, key string, data []byte, version string) (newVersion string, err error)
	// DeleteIf removes the object at key if it is still at version.
	DeleteIf(ctx context.Context, key, version string) error
}

// leaseAttempts bounds the tries at taking a lease when the store answers
// with something other than "taken".
const leaseAttempts = 4

// fillLease is one filler's claim, kept in the store, on fetching one blob
// from upstream. A lease with no Leaser is a no-op (a store without
// conditional writes, or one whose leases keep failing): the conditional
// publish still keeps two fills from both storing the blob.
type fillLease struct {
	l     Leaser
	key   string // the lease object
	blob  string // the blob's key
	owner string
	ttl   time.Duration
	now   func() time.Time
	log   *slog.Logger

	mu  sync.Mutex
	ver string // the version this holder last wrote; "" once lost or released
}

func (e *Engine) newLease(l Leaser, d digest.Digest, owner string) *fillLease {
	return &fillLease{l: l, key: cache.LeaseKey(d), blob: cache.BlobKey(d), owner: owner, ttl: e.cfg.LeaseTTL, now: e.cache.Now, log: e.log}
}

func (fl *fillLease) record() []byte {
	rec, _ := json.Marshal(cache.LeaseRecord{Owner: fl.owner, Expires: fl.now().Add(fl.ttl)})
	return rec
}

// expired reports whether a lease record is past its expiry. A record
// that cannot be read counts as expired, or it would block fills forever.
func (fl *fillLease) expired(data []byte) bool {
	var cur cache.LeaseRecord
	if err := json.Unmarshal(data, &cur); err != nil {
		return true
	}
	return !cache.LeaseLive(cur, fl.now())
}

// take writes the lease if there is none. It fails with fs.ErrExist when
// another holder has it.
func (fl *fillLease) take(ctx context.Context) error {
	ver, err := fl.l.PutIfAbsent(ctx, fl.key, fl.record())
	if err == nil {
		fl.ver = ver
	}
	return err
}

// takeOver replaces a lease whose holder stopped renewing it, conditional
// on the version read, so that of several waiters only one takes it.
func (fl *fillLease) takeOver(ctx context.Context) bool {
	data, ver, err := fl.l.ReadVersion(ctx, fl.key)
	if err != nil || !fl.expired(data) {
		return false // another waiter took it, its holder let go, or it is live
	}
	nv, err := fl.l.ReplaceIf(ctx, fl.key, fl.record(), ver)
	if err != nil {
		return false
	}
	fl.ver = nv
	fl.log.Warn("took over an expired fill lease", "key", fl.key)
	return true
}

// renew extends the lease. It fails with fs.ErrExist or fs.ErrNotExist if
// another holder has taken it over (the lease is then lost for good).
func (fl *fillLease) renew(ctx context.Context) error {
	if fl.l == nil {
		return nil
	}
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.ver == "" {
		return fs.ErrNotExist
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	nv, err := fl.l.ReplaceIf(rctx, fl.key, fl.record(), fl.ver)
	switch {
	case err == nil:
		fl.ver = nv
	case errors.Is(err, fs.ErrExist) || errors.Is(err, fs.ErrNotExist):
		fl.ver = ""
	}
	return err
}

// release deletes the lease if it is still the version this holder wrote:
// never one another filler has taken over since.
func (fl *fillLease) release(ctx context.Context) {
	if fl.l == nil {
		return
	}
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.ver == "" {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := fl.l.DeleteIf(dctx, fl.key, fl.ver); err != nil && !errors.Is(err, fs.ErrExist) && !errors.Is(err, fs.ErrNotExist) {
		fl.log.Warn("fill lease release failed", "key", fl.key, "cause", err.Error())
	}
	fl.ver = ""
}

// hold runs fn while a goroutine renews the lease every third of its TTL;
// both end before it returns (nothing may outlive a Lambda invocation). A
// renewal that finds the lease taken over stops renewing: fn goes on, and
// the conditional publish keeps the two fills from both storing the blob.
func (fl *fillLease) hold(ctx context.Context, fn func(context.Context) (int64, error)) (int64, error) {
	if fl.l == nil {
		return fn(ctx)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(max(fl.ttl/3, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				err := fl.renew(ctx)
				switch {
				case err == nil:
				case errors.Is(err, fs.ErrExist) || errors.Is(err, fs.ErrNotExist):
					fl.log.Warn("fill lease lost to another filler", "key", fl.key)
					return
				default:
					fl.log.Warn("fill lease renewal failed", "key", fl.key, "cause", err.Error())
				}
			}
		}
	}()
	size, err := fn(ctx)
	close(stop)
	wg.Wait()
	return size, err
}

// acquireLease takes the fill lease of rt's blob, waiting while another
// holder has it: it polls with back-off for the blob, and takes over a
// lease whose holder stopped renewing. It returns a lease to fill under, or
// no lease and the size of a blob that was published meanwhile. Waiting is
// bounded by FillWait, after which the client is told to retry.
func (e *Engine) acquireLease(ctx context.Context, b Blob) (*fillLease, int64, error) {
	l, ok := e.store.(Leaser)
	if !ok {
		return &fillLease{}, 0, nil
	}
	key := cache.BlobKey(b.Digest)
	deadline := e.cache.Now().Add(e.cfg.FillWait)
	backoff := 100 * time.Millisecond
	retry, failures := 50*time.Millisecond, 0
	// The caller has just seen the blob missing, so try for the lease
	// first and look again only once the lease is ours, or taken.
	for {
		fl := e.newLease(l, b.Digest, newOwner())
		err := fl.take(ctx)
		switch {
		case err == nil:
			return e.stillMissing(ctx, fl)
		case !errors.Is(err, fs.ErrExist):
			// S3 answers racing conditional writes with 409
			// (ConditionalRequestConflict): try again a few times. A store
			// that still cannot lease can be filled without one.
			if failures++; failures < leaseAttempts {
				if err := e.pause(ctx, deadline, &retry); err != nil {
					return nil, 0, err
				}
				continue
			}
			e.log.Warn("fill lease unavailable, filling without it", "digest", b.Digest.String(), "cause", err.Error())
			return &fillLease{}, 0, nil
		}
		if size, err := e.store.Stat(ctx, key); err == nil {
			return nil, size, nil
		}
		if fl.takeOver(ctx) {
			return e.stillMissing(ctx, fl)
		}
		if err := e.pause(ctx, deadline, &backoff); err != nil {
			return nil, 0, err
		}
	}
}

// stillMissing keeps a lease just taken unless the blob was published
// meanwhile (by the holder that just let go).
func (e *Engine) stillMissing(ctx context.Context, fl *fillLease) (*fillLease, int64, error) {
	if size, err := e.store.Stat(ctx, fl.blob); err == nil {
		fl.release(ctx)
		return nil, size, nil
	}
	return fl, 0, nil
}

// leaseForJob takes rt's fill lease for a background fill, without
// waiting: nil if another holder has a live lease (a fill is in progress,
// or a job is about to start one), so that of many requests for one blob
// only one starts a background fill per lease lifetime, across instances.
func (e *Engine) leaseForJob(ctx context.Context, b Blob) *fillLease {
	l, ok := e.store.(Leaser)
	if !ok {
		return &fillLease{}
	}
	fl := e.newLease(l, b.Digest, newOwner())
	if err := fl.take(ctx); err == nil || fl.takeOver(ctx) {
		return fl
	} else if !errors.Is(err, fs.ErrExist) {
		e.log.Warn("fill lease unavailable, no background fill started", "digest", b.Digest.String(), "cause", err.Error())
	}
	return nil
}

// adoptLease takes up the lease a request took on a background fill's
// behalf (FillJob.Lease): nil if it is gone or another holder has it.
func (e *Engine) adoptLease(ctx context.Context, b Blob, owner string) *fillLease {
	l, ok := e.store.(Leaser)
	if !ok || owner == "" {
		return nil
	}
	data, ver, err := l.ReadVersion(ctx, cache.LeaseKey(b.Digest))
	var rec cache.LeaseRecord
	if err != nil || json.Unmarshal(data, &rec) != nil || rec.Owner != owner {
		return nil
	}
	fl := e.newLease(l, b.Digest, owner)
	fl.ver = ver
	if fl.renew(ctx) != nil {
		return nil
	}
	return fl
}

func newOwner() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
