// Package fill is the mirror's fill engine: how a blob missing from the
// store gets there from its upstream, verified. It plans each fill
// (plan.go), takes the blob's lease in the store so that processes sharing
// it fetch a blob once (lease.go), shares one fill among the requests of
// one process (flight.go), streams a fill's bytes to its clients through a
// spool (spool.go), fetches big blobs as parallel ranges (ranged.go),
// enforces the size cap (cap.go) and bounds the fills a process runs at
// once (slots.go).
//
// It returns outcomes (a size, a redirect, a stream to send) and never
// writes a response: the serving side renders them. Upstream failures come
// back as the upstream client's errors, for the serving side to map.
package fill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullthrough/pullthrough/internal/cache"
	"github.com/pullthrough/pullthrough/internal/oci"
	"github.com/pullthrough/pullthrough/internal/upstream"
)

// Store is what fills need of a storage backend. Not-found matches
// fs.ErrNotExist; a Commit that finds an object at the key, fs.ErrExist.
// Stores with conditional writes also implement Leaser.
type Store interface {
	Stat(ctx context.Context, key string) (int64, error)
	// Create starts a streamed write; nothing is visible at key until
	// Commit returns nil.
	Create(ctx context.Context, key string) (Upload, error)
}

// Upload is a write in progress; exactly one of Commit and Abort must be
// called. It is an alias of an interface literal so stores can return the
// identical type without importing this package.
type Upload = interface {
	io.Writer
	Commit(ctx context.Context) error
	Abort(ctx context.Context) error
}

// Config is the fill policy and its bounds, defaults applied (the proxy's
// Config owns the defaults and validation).
type Config struct {
	FillTimeout     time.Duration // one fill, upstream to store
	LeaseTTL        time.Duration // a lease not renewed for this long is taken over
	FillWait        time.Duration // how long a request waits for another's fill
	LargeBlobPolicy string        // PolicyWait, PolicyUpstream or PolicyAuto
	LargeBlobSize   int64         // bytes
	MaxBlobSize     int64         // bytes; 0 or less: no cap
	FillParts       int           // ranged GETs at once for a big blob
	FillPartSize    int64         // bytes per ranged GET
	SpoolDir        string        // "": the system's temporary directory
	MaxFills        int           // fills this process runs at once
	ProgressEvery   time.Duration // how often a fill logs its progress; 0: DefaultProgressEvery
	// Background starts a fill outside the request (in Lambda: the
	// function invoking itself, which then calls Run); nil: fills that
	// outlive a request run in goroutines of this process.
	Background func(ctx context.Context, job Job) error
	// Filled, if set, is told of the bytes a fill verified, with the
	// context of the request that started it.
	Filled func(ctx context.Context, n int64)
	// Failed, if set, is told of a fill in this process that failed (not
	// one that gave up waiting, nor one refused for capacity), by upstream
	// host. Fills run by Run are the caller's to report.
	Failed func(upstream string)
}

// Job is a blob fill to run outside the request that needed it: in
// Lambda, an asynchronous invocation of the function itself (see Run).
// Its JSON is the invocation's payload.
type Job struct {
	Upstream string        `json:"upstream"`
	Name     string        `json:"name"`
	Digest   digest.Digest `json:"digest"`
	// Lease is the owner of the fill lease the request took on the job's
	// behalf; the job takes it up, so no other request starts a second
	// job meanwhile. Empty: the job takes the lease itself.
	Lease string `json:"lease,omitempty"`
}

// Blob names what a fill fetches: a digest in one repository of one
// upstream, already validated and allowed by the caller.
type Blob struct {
	Up     *upstream.Client
	Name   string
	Digest digest.Digest
}

// key names one fill: the upstream and the digest. Every repository of
// the upstream whose link to the digest is verified (the serving side's
// job: Outcome.For, Stream.For) joins the same fill (harbor #22570,
// distribution PR #4664): one blob, one download, however many
// repositories share it.
func (b Blob) key() string { return b.Up.Host() + "@" + b.Digest.String() }

// absentKey names an upstream's 404 for a blob in one repository: it says
// nothing of the blob in another.
func (b Blob) absentKey() string { return b.Up.Host() + "/" + b.Name + "@" + b.Digest.String() }

// Outcome is what a miss came to; exactly one of its fields is set.
type Outcome struct {
	// Size is the blob's size in bytes once it is in the store.
	Size int64
	// For is the repository the fill ran for: when it is not the
	// caller's, the caller must confirm its own repository's link before
	// it serves the blob.
	For string
	// Location: send the client to the upstream's own blob URL (a fill
	// runs behind).
	Location string
	// Stream: send the client these bytes as they arrive.
	Stream *Stream
}

// Engine runs the fills of one process.
type Engine struct {
	cfg     Config
	store   Store
	cache   *cache.Cache
	log     *slog.Logger
	limits  fillLimits
	slots   fillSlots
	flights Group[fillOutcome] // blob fills, by Blob.key
	spools  spools             // streamed fills in progress, by Blob.key
	absent  *cache.Memo[string, struct{}]
}

// New builds an engine over store and c (its records and clock). A nil
// logger discards.
func New(cfg Config, store Store, c *cache.Cache, log *slog.Logger) *Engine {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Engine{
		cfg: cfg, store: store, cache: c, log: log,
		limits: fillLimits{policy: cfg.LargeBlobPolicy, largeSize: cfg.LargeBlobSize, requestBound: cfg.Background != nil},
		slots:  make(fillSlots, cfg.MaxFills),
		absent: cache.NewMemo[string, struct{}](10000),
	}
}

// RequestBound reports whether nothing may outlive a request (Lambda).
func (e *Engine) RequestBound() bool { return e.limits.requestBound }

// Busy reports how many fills run now.
func (e *Engine) Busy() int { return len(e.slots) }

func (e *Engine) filled(ctx context.Context, n int64) {
	if e.cfg.Filled != nil {
		e.cfg.Filled(ctx, n)
	}
}

// fillOutcome is what a fill did: stored the blob (size bytes), or, once
// the GET's Content-Length showed it too large for the request, handed it
// to a background fill (handedOff; size is the announced size).
type fillOutcome struct {
	size      int64
	handedOff bool
	name      string // the repository the fill ran for
}

// Miss decides and starts what a client's GET of a blob missing from the
// store comes to, following planFill: a redirect to the upstream's blob
// URL, a stream of the bytes as they are filled, or, once the blob is
// stored, its size. streamable: the client takes the whole blob as it
// arrives (not a Range request). Each pass learns one fact (the size, or
// that no redirect is possible) and planFill asks for neither twice: at
// most three passes.
func (e *Engine) Miss(ctx context.Context, b Blob, streamable bool) (Outcome, error) {
	if err := e.KnownAbsent(b); err != nil {
		return Outcome{}, err
	}
	facts := b.Up.Facts()
	f := fillFacts{size: -1, redirectable: true, cdn: facts.CDN, rate: facts.FillRate, streamable: streamable}
	for {
		switch planFill(e.limits, f) {
		case planAskSize:
			if n, err := b.Up.HeadBlob(ctx, b.Name, b.Digest); err == nil {
				if err := e.overCap(b, n); err != nil {
					return Outcome{}, err
				}
				f.size = n
			} else {
				f.redirectable = false // fill it here, as if the upstream had no CDN
			}
		case planRedirect:
			loc, err := b.Up.BlobLocation(ctx, b.Name, b.Digest)
			if err != nil || loc == "" {
				f.redirectable = false
				continue
			}
			e.fillBehind(ctx, b, nil)
			return Outcome{Location: loc}, nil
		case planBackground:
			since := e.cache.Now()
			e.fillBehind(ctx, b, nil)
			size, err := e.waitForBlob(ctx, b, since)
			return Outcome{Size: size}, err
		case planStream:
			return e.stream(ctx, b, f)
		default:
			if f.streamable {
				// Lambda, size unknown: the GET's Content-Length decides.
				return e.stream(ctx, b, f)
			}
			return e.Fill(ctx, b)
		}
	}
}

// Fill fills a missing blob for a caller that waits for it (a Range
// request, a warm) and returns its size once it is stored; a fill handed to
// a background fill is waited for in the store.
func (e *Engine) Fill(ctx context.Context, b Blob) (Outcome, error) {
	since := e.cache.Now()
	out, err := e.fill(ctx, b, fillFacts{size: -1})
	if err == nil && out.handedOff {
		size, err := e.waitForBlob(ctx, b, since)
		return Outcome{Size: size}, err
	}
	return Outcome{Size: out.size, For: out.name}, err
}

// Warm fills a missing blob for a warm: as Fill, but a fill handed to a
// background fill is not waited for (handedOff, with the announced size).
func (e *Engine) Warm(ctx context.Context, b Blob) (size int64, handedOff bool, err error) {
	if err := e.KnownAbsent(b); err != nil {
		return 0, false, err
	}
	out, err := e.fill(ctx, b, fillFacts{size: -1})
	return out.size, out.handedOff, err
}

// fill fills a missing blob in this process. Concurrent callers for the
// same upstream, repository and digest share one fill. The fill runs on a
// context detached from the client: a client that gives up (and will
// retry) should not waste the bytes already copied. In the local server the
// fill runs in its own goroutine and a caller waits for at most FillWait; in
// Lambda it runs in the caller (nothing may outlive the request).
func (e *Engine) fill(ctx context.Context, b Blob, f fillFacts) (fillOutcome, error) {
	out, err := e.fillOnce(ctx, b, f)
	if err != nil && out.name != "" && out.name != b.Name && repositoryRefused(err) {
		// The fill this request joined was another repository's, and that
		// repository's answer says nothing of this one's: fill for this one.
		out, err = e.fillOnce(ctx, b, f)
	}
	return out, err
}

func (e *Engine) fillOnce(ctx context.Context, b Blob, f fillFacts) (fillOutcome, error) {
	run := func() (fillOutcome, error) {
		out, err := e.fillNow(ctx, b, f, "")
		out.name = b.Name
		if err != nil && e.cfg.Failed != nil && !errors.Is(err, ErrPending) && !errors.Is(err, oci.ErrBlobUnknown) && !repositoryRefused(err) && !errors.Is(err, errCapacity) {
			e.cfg.Failed(b.Up.Host())
		}
		return out, err
	}
	if e.limits.requestBound {
		return e.flights.Do(ctx, b.key(), false, 0, run)
	}
	return e.flights.Do(ctx, b.key(), true, e.cfg.FillWait, run)
}

// repositoryRefused reports an upstream answer about one repository (404,
// 401, 403), not about the blob's bytes or the upstream as a whole.
func repositoryRefused(err error) bool {
	switch upstream.StatusOf(err) {
	case http.StatusNotFound, http.StatusUnauthorized, http.StatusForbidden:
		return true
	}
	return false
}

// Run runs a Job for a blob the caller has validated (the Lambda handler
// calls it for the function's own asynchronous invocations).
func (e *Engine) Run(ctx context.Context, b Blob, lease string) error {
	if lease == "" {
		if _, err := e.store.Stat(ctx, cache.BlobKey(b.Digest)); err == nil {
			return nil // filled meanwhile
		}
	}
	_, err := e.fillNow(ctx, b, fillFacts{size: -1, background: true}, lease)
	return err
}

// fillNow fills under the blob's lease: the one taken for it by a request
// (owner, for a background job), or one it takes. It holds one of the
// process's fill slots throughout.
func (e *Engine) fillNow(ctx context.Context, b Blob, f fillFacts, owner string) (_ fillOutcome, err error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.FillTimeout)
	defer cancel()
	done, ok := e.slots.take()
	if !ok {
		e.log.Warn("fill refused: the process runs as many fills as it may", "digest", b.Digest.String(), "max_fills", e.cfg.MaxFills)
		return fillOutcome{}, errFillCapacity()
	}
	defer done()
	fl, src, size, err := e.leaseAndOpen(ctx, b, owner)
	if err != nil || fl == nil {
		return fillOutcome{size: size}, err
	}
	f.size, f.redirectable = src.Size, false
	var sink *spool
	switch planFill(e.limits, f) {
	case planBackground:
		// Lambda: a fill that may outlast this invocation runs in its own,
		// under the lease taken here.
		src.Close()
		e.fillBehind(ctx, b, fl)
		return fillOutcome{size: f.size, handedOff: true}, nil
	case planStream:
		if sink, err = newSpool(e.cfg.SpoolDir, f.size); err != nil {
			e.log.Warn("fill not streamed: no spool", "digest", b.Digest.String(), "cause", err.Error())
			sink = nil
		}
	}
	if sink == nil {
		defer fl.release(ctx)
	} else {
		key := b.key()
		sink.name = b.Name
		e.spools.put(key, sink)
		// Readers get the last byte once the upstream's bytes are all in
		// and verified (copyBlob), not once the blob is published: the
		// spool stays joinable until it is (Join), so a request meanwhile
		// streams it too rather than start a second fill. The lease is let
		// go first, so that a client that hears of a failure and retries
		// at once starts a new fill.
		defer func() {
			fl.release(ctx)
			if err != nil {
				// Its streaming readers hear of the failure from the spool,
				// before this fill's flight ends: a reader that retries at
				// once must start a new fill, not join this one.
				e.flights.Forget(key)
			}
			e.spools.remove(key, sink)
			sink.finish(err)
		}()
	}
	size, err = fl.hold(ctx, func(ctx context.Context) (int64, error) { return e.copyBlob(ctx, b, src, sink) })
	return fillOutcome{size: size}, err
}

// leaseAndOpen returns the lease to fill under and the upstream's answer
// to fill from: the lease taken for a background job (owner), or one
// taken here. No lease and a size: the blob was published meanwhile.
func (e *Engine) leaseAndOpen(ctx context.Context, b Blob, owner string) (*fillLease, *upstream.Blob, int64, error) {
	fl := e.adoptLease(ctx, b, owner)
	if fl != nil {
		if size, err := e.store.Stat(ctx, fl.blob); err == nil {
			fl.release(ctx)
			return nil, nil, size, nil
		}
	} else {
		if err := e.confirm(ctx, b); err != nil {
			return nil, nil, 0, err
		}
		var size int64
		var err error
		if fl, size, err = e.acquireLease(ctx, b); err != nil || fl == nil {
			return nil, nil, size, err
		}
	}
	src, err := e.openBlob(ctx, b)
	if err != nil {
		fl.release(ctx)
		return nil, nil, 0, err
	}
	return fl, src, 0, nil
}

// confirm makes sure the upstream has the blob before the fill writes its
// lease, so that requests for digests the upstream does not have write
// nothing to the store (Confirm), and refuses one its HEAD shows over the
// size cap.
func (e *Engine) confirm(ctx context.Context, b Blob) error {
	n, err := e.Confirm(ctx, b)
	if err != nil || n < 0 {
		return err
	}
	return e.overCap(b, n)
}

// Confirm makes sure the upstream has b in its repository. A blob linked
// there was confirmed already: the upstream served a manifest there that
// references it, or confirmed it before (the common case, from the links'
// memo, at no cost); any other is asked with a HEAD (free of Docker Hub's
// pull count; a one-byte ranged GET where HEAD is refused). size is the
// HEAD's, -1 when linked already; linking what a HEAD confirmed is the
// caller's (a fill links what it stored, cache.Link).
// A 404 is remembered like a GET's (KnownAbsent). Errors are the store's
// (OCI errors) or the upstream client's.
func (e *Engine) Confirm(ctx context.Context, b Blob) (size int64, err error) {
	if ok, err := e.cache.Linked(ctx, b.Up.Host(), b.Name, b.Digest); err != nil || ok {
		return -1, err
	}
	n, err := b.Up.HeadBlob(ctx, b.Name, b.Digest)
	if upstream.StatusOf(err) == http.StatusNotFound {
		e.absent.Put(b.absentKey(), struct{}{}, e.cache.Now())
	}
	return n, err
}

// fillBehind starts a fill that outlives the request: in the local server a
// goroutine; in Lambda an asynchronous invocation of the function, under
// fl (a lease the caller holds) or a lease taken here. No invocation starts
// while another holder's lease is live: a loop of requests for one blob
// starts one job per lease lifetime, not one per request.
func (e *Engine) fillBehind(ctx context.Context, b Blob, fl *fillLease) {
	if !e.limits.requestBound {
		go e.fill(context.WithoutCancel(ctx), b, fillFacts{size: -1, background: true})
		return
	}
	if fl == nil {
		if fl = e.leaseForJob(ctx, b); fl == nil {
			return
		}
	}
	job := Job{Upstream: b.Up.Host(), Name: b.Name, Digest: b.Digest, Lease: fl.owner}
	if err := e.cfg.Background(context.WithoutCancel(ctx), job); err != nil {
		e.log.Warn("background fill could not start", "digest", b.Digest.String(), "cause", err.Error())
		fl.release(ctx)
	}
}

// waitForBlob polls the store for a blob another invocation is filling,
// for at most FillWait. It stops early if a fill that started after since
// is known to have failed (failure.go).
func (e *Engine) waitForBlob(ctx context.Context, b Blob, since time.Time) (int64, error) {
	deadline := e.cache.Now().Add(e.cfg.FillWait)
	backoff := 100 * time.Millisecond
	for {
		if size, err := e.store.Stat(ctx, cache.BlobKey(b.Digest)); err == nil {
			return size, nil
		}
		if e.failedSince(ctx, b.Digest, since) {
			return 0, errFillFailed()
		}
		if err := e.pause(ctx, deadline, &backoff); err != nil {
			return 0, err
		}
	}
}

// pause waits out one polling interval (doubling it, up to 2s) unless the
// deadline has passed or the request ended.
func (e *Engine) pause(ctx context.Context, deadline time.Time, backoff *time.Duration) error {
	if e.cache.Now().After(deadline) {
		return errFillPending()
	}
	select {
	case <-ctx.Done():
		return oci.ErrUnavailable.With("request ended while waiting for a fill", ctx.Err())
	case <-time.After(*backoff):
	}
	*backoff = min(*backoff*2, 2*time.Second)
	return nil
}

// ErrPending is a 503 for a blob another request or instance is still
// fetching; it has its own identity so a fill that gave up waiting is not
// mistaken for one that failed.
var ErrPending = &oci.Error{Code: "UNAVAILABLE", Status: http.StatusServiceUnavailable, Message: "the blob is still being fetched from upstream; retry shortly"}

func errFillPending() *oci.Error { return ErrPending.After(5 * time.Second) }

// retryLater is a 503 UNAVAILABLE with Retry-After: the registry/2.0 code
// for a server that cannot answer now (TOOMANYREQUESTS is a 429 about the
// client's own rate).
func retryLater(msg string) *oci.Error {
	return oci.ErrUnavailable.With(msg, nil).After(5 * time.Second)
}

// openBlob starts the upstream GET of a fill. A 404 is remembered for a
// short while (see KnownAbsent); a length over the size cap is refused.
func (e *Engine) openBlob(ctx context.Context, b Blob) (*upstream.Blob, error) {
	src, err := b.Up.GetBlob(ctx, b.Name, b.Digest)
	if upstream.StatusOf(err) == http.StatusNotFound {
		e.absent.Put(b.absentKey(), struct{}{}, e.cache.Now())
	}
	if err != nil {
		return nil, err
	}
	if err := e.overCap(b, src.Size); err != nil {
		src.Close()
		return nil, err
	}
	return src, nil
}

// absentTTL is how long an upstream's 404 for a blob is believed: ten
// identical GETs of a blob the upstream does not have cost one upstream
// GET, and no lease writes, within it. Short, so a blob pushed upstream
// just after is soon found.
const absentTTL = 30 * time.Second

// KnownAbsent fails with BLOB_UNKNOWN if the upstream answered 404 for
// this blob in this repository moments ago.
func (e *Engine) KnownAbsent(b Blob) error {
	if _, ok := e.absent.Get(b.absentKey(), e.cache.Now(), absentTTL); ok {
		return oci.ErrBlobUnknown.With("", fmt.Errorf("upstream %s answered 404 for %s less than %s ago", b.Up.Host(), b.Digest, absentTTL))
	}
	return nil
}
