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

// Leaser is implemented by stores that can create an object only if it is
// absent (S3's If-None-Match: *, link(2) on a file system). The proxy uses
// it for fill leases, so that separate processes sharing a store (Lambda
// instances) fetch each missing blob from upstream once.
type Leaser interface {
	// PutIfAbsent stores data at key unless an object is there, in which
	// case it returns an error matching fs.ErrExist.
	PutIfAbsent(ctx context.Context, key string, data []byte) error
	Delete(ctx context.Context, key string) error
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
// lease while it works; others poll for the blob with back-off and take
// over a lease whose holder stopped renewing (a killed process). Waiting is
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
		rec, _ := json.Marshal(lease{Owner: me, Expires: p.now().Add(p.cfg.LeaseTTL)})
		err := l.PutIfAbsent(ctx, lkey, rec)
		switch {
		case err == nil:
			// A filler may have published and released just before.
			if size, err := p.store.Stat(ctx, key); err == nil {
				p.releaseLease(ctx, l, lkey)
				return size, nil
			}
			return p.holdLease(ctx, l, lkey, me, fill)
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
		var cur lease
		if err := p.loadJSON(ctx, lkey, &cur); err == nil && p.now().After(cur.Expires) {
			p.log.Warn("taking over an expired fill lease", "digest", rt.digest.String(), "owner", cur.Owner)
			l.Delete(ctx, lkey)
			continue
		}
		if err := p.pause(ctx, deadline, &backoff); err != nil {
			return 0, err
		}
	}
}

// holdLease runs fill while a goroutine renews the lease; both end before
// it returns (nothing may outlive a Lambda invocation).
func (p *Proxy) holdLease(ctx context.Context, l Leaser, lkey, me string, fill func(context.Context) (int64, error)) (int64, error) {
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
				rec, _ := json.Marshal(lease{Owner: me, Expires: p.now().Add(p.cfg.LeaseTTL)})
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				if err := p.store.Put(rctx, lkey, rec); err != nil {
					p.log.Warn("fill lease renewal failed", "cause", err.Error())
				}
				cancel()
			}
		}
	}()
	size, err := fill(ctx)
	close(stop)
	wg.Wait()
	p.releaseLease(ctx, l, lkey)
	return size, err
}

func (p *Proxy) releaseLease(ctx context.Context, l Leaser, lkey string) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := l.Delete(dctx, lkey); err != nil {
		p.log.Warn("fill lease release failed", "cause", err.Error())
	}
}

func newOwner() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
