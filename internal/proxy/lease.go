package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"sync"
	"time"
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

// lease is the content of a fill lease object.
type lease struct {
	Owner   string    `json:"owner"`
	Expires time.Time `json:"expires"`
}

func leaseKey(key string) string { return "leases/" + key }

// leaseAttempts bounds the tries at taking a lease when the store answers
// with something other than "taken".
const leaseAttempts = 4

// fillShared runs fill under a lease in the store. The holder renews the
// lease while it works; others poll for the blob with back-off. A lease
// whose holder stopped renewing (a killed process) is taken over with a
// conditional replace, so of several waiters only one takes it. Waiting is
// bounded by LeaseWait, after which the client is told to retry.
func (p *Proxy) fillShared(ctx context.Context, l Leaser, rt route, fill func(context.Context) (int64, error)) (int64, error) {
	key := blobKey(rt.digest)
	lkey := leaseKey(key)
	deadline := p.now().Add(p.cfg.LeaseWait)
	backoff := 100 * time.Millisecond
	retry, failures := 50*time.Millisecond, 0
	// The caller has just seen the blob missing, so try for the lease
	// first and look again only once the lease is ours, or taken.
	for {
		me := newOwner()
		ver, err := l.PutIfAbsent(ctx, lkey, p.leaseRecord(me))
		switch {
		case err == nil:
			return p.filled(ctx, l, key, lkey, me, ver, fill)
		case !errors.Is(err, fs.ErrExist):
			// S3 answers racing conditional writes with 409
			// (ConditionalRequestConflict): try again a few times. A store
			// that still cannot lease can be filled without one.
			if failures++; failures < leaseAttempts {
				if err := p.pause(ctx, deadline, &retry); err != nil {
					return 0, err
				}
				continue
			}
			p.log.Warn("fill lease unavailable, filling without it", "digest", rt.digest.String(), "cause", err.Error())
			return fill(ctx)
		}
		if size, err := p.store.Stat(ctx, key); err == nil {
			return size, nil
		}
		if data, ver, err := l.ReadVersion(ctx, lkey); err == nil && p.leaseExpired(data) {
			// Otherwise another waiter took it, or its holder let go.
			if ver, err := l.ReplaceIf(ctx, lkey, p.leaseRecord(me), ver); err == nil {
				p.log.Warn("took over an expired fill lease", "digest", rt.digest.String())
				return p.filled(ctx, l, key, lkey, me, ver, fill)
			}
		}
		if err := p.pause(ctx, deadline, &backoff); err != nil {
			return 0, err
		}
	}
}

// filled runs fill under a lease just taken, unless the blob was published
// meanwhile (by the holder that just let go).
func (p *Proxy) filled(ctx context.Context, l Leaser, key, lkey, me, ver string, fill func(context.Context) (int64, error)) (int64, error) {
	if size, err := p.store.Stat(ctx, key); err == nil {
		p.releaseLease(ctx, l, lkey, ver)
		return size, nil
	}
	return p.holdLease(ctx, l, lkey, me, ver, fill)
}

func (p *Proxy) leaseRecord(owner string) []byte {
	rec, _ := json.Marshal(lease{Owner: owner, Expires: p.now().Add(p.cfg.LeaseTTL)})
	return rec
}

// leaseExpired reports whether a lease record is past its expiry. A record
// that cannot be read counts as expired, or it would block fills forever.
func (p *Proxy) leaseExpired(data []byte) bool {
	var cur lease
	if err := json.Unmarshal(data, &cur); err != nil {
		return true
	}
	return p.now().After(cur.Expires)
}

// holdLease runs fill while a goroutine renews the lease; both end before
// it returns (nothing may outlive a Lambda invocation). A renewal that finds
// the lease taken over stops renewing: the fill goes on, and the
// conditional publish keeps the two fills from both storing the blob.
func (p *Proxy) holdLease(ctx context.Context, l Leaser, lkey, me, ver string, fill func(context.Context) (int64, error)) (int64, error) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(p.cfg.LeaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				nv, err := l.ReplaceIf(rctx, lkey, p.leaseRecord(me), ver)
				cancel()
				switch {
				case err == nil:
					ver = nv
				case errors.Is(err, fs.ErrExist) || errors.Is(err, fs.ErrNotExist):
					p.log.Warn("fill lease lost to another filler", "key", lkey)
					ver = ""
					return
				default:
					p.log.Warn("fill lease renewal failed", "cause", err.Error())
				}
			}
		}
	}()
	size, err := fill(ctx)
	close(stop)
	wg.Wait()
	if ver != "" {
		p.releaseLease(ctx, l, lkey, ver)
	}
	return size, err
}

// releaseLease deletes the lease if it is still the version this filler
// wrote: never one another filler has taken over since.
func (p *Proxy) releaseLease(ctx context.Context, l Leaser, lkey, ver string) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := l.DeleteIf(dctx, lkey, ver); err != nil && !errors.Is(err, fs.ErrExist) && !errors.Is(err, fs.ErrNotExist) {
		p.log.Warn("fill lease release failed", "cause", err.Error())
	}
}

func newOwner() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
