package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"time"

	"github.com/opencontainers/go-digest"
)

// FillJob is a blob fill to run outside the request that needed it: in
// Lambda, an asynchronous invocation of the function itself (see RunFill).
type FillJob struct {
	Upstream string        `json:"upstream"`
	Name     string        `json:"name"`
	Digest   digest.Digest `json:"digest"`
	// Lease is the owner of the fill lease the request took on the job's
	// behalf; the job takes it up, so no other request starts a second
	// job meanwhile. Empty: the job takes the lease itself.
	Lease string `json:"lease,omitempty"`
}

// fillOutcome is what a fill did: stored the blob (size bytes), or, once
// the GET's Content-Length showed it too large for the request, handed it
// to a background fill (handedOff; size is the announced size).
type fillOutcome struct {
	size      int64
	handedOff bool
}

// serveMiss answers a GET for a blob that is not in the store, following
// planFill. It returns the size once the blob is stored, or redirected
// when it answered the client itself: sent it to the upstream's own blob
// URL, or streamed it the bytes while filling (stream.go). A Range
// request is not streamed: it waits for the fill and gets its 206 from
// the store.
func (p *Proxy) serveMiss(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route) (size int64, redirected bool, err error) {
	if err := p.knownAbsent(rt); err != nil {
		return 0, false, err
	}
	f := fillFacts{size: -1, redirectable: true, cdn: rt.up.redirectsBlobs.Load(), rate: rt.up.fillRate.get(),
		streamable: r.Header.Get("Range") == ""}
	// Each pass learns one fact (the size, or that no redirect is
	// possible) and planFill asks for neither twice: at most three passes.
	for {
		switch planFill(p.limits, f) {
		case planAskSize:
			if n, err := p.headUpstreamBlob(ctx, rt); err == nil {
				if err := p.overCap(rt, n); err != nil {
					return 0, false, err
				}
				f.size = n
			} else {
				f.redirectable = false // fill it here, as if the upstream had no CDN
			}
		case planRedirect:
			loc, err := rt.up.blobLocation(ctx, rt.name, rt.digest)
			if err != nil || loc == "" {
				f.redirectable = false
				continue
			}
			p.fillBehind(ctx, rt, nil)
			w.Header().Set(headerCache, cacheUpstream)
			w.Header().Set("Location", loc)
			w.Header().Set("Content-Length", "0")
			w.WriteHeader(http.StatusTemporaryRedirect)
			return 0, true, nil
		case planBackground:
			since := p.now()
			p.fillBehind(ctx, rt, nil)
			size, err = p.waitForBlob(ctx, rt, since)
			return size, false, err
		case planStream:
			return p.streamMissing(ctx, w, rt, f)
		default:
			if f.streamable {
				// Lambda, size unknown: the GET's Content-Length decides.
				return p.streamMissing(ctx, w, rt, f)
			}
			since := p.now()
			out, err := p.fill(ctx, rt, f)
			if err == nil && out.handedOff {
				out.size, err = p.waitForBlob(ctx, rt, since)
			}
			return out.size, false, err
		}
	}
}

// fill fills a missing blob in this process. Concurrent callers for the
// same upstream, repository and digest share one fill. The fill runs on a
// context detached from the client: a client that gives up (and will
// retry) should not waste the bytes already copied. In the local server the
// fill runs in its own goroutine and a caller waits for at most FillWait; in
// Lambda it runs in the caller (nothing may outlive the request).
func (p *Proxy) fill(ctx context.Context, rt route, f fillFacts) (fillOutcome, error) {
	run := func() (fillOutcome, error) { return p.fillNow(ctx, rt, f, "") }
	key := fillKey(rt)
	if p.limits.requestBound {
		return p.blobFills.do(ctx, key, false, 0, run)
	}
	return p.blobFills.do(ctx, key, true, p.cfg.FillWait, run)
}

// fillKey names one fill: the upstream, the repository and the digest.
func fillKey(rt route) string {
	return rt.up.Host() + "/" + rt.name + "@" + rt.digest.String()
}

// fillNow fills under the blob's lease: the one taken for it by a request
// (owner, for a background job), or one it takes. It holds one of the
// process's fill slots throughout.
func (p *Proxy) fillNow(ctx context.Context, rt route, f fillFacts, owner string) (fillOutcome, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.FillTimeout)
	defer cancel()
	done, ok := p.slots.take()
	if !ok {
		p.log.Warn("fill refused: the process runs as many fills as it may", "digest", rt.digest.String(), "max_fills", p.cfg.MaxFills)
		return fillOutcome{}, errFillCapacity()
	}
	defer done()
	fl := p.adoptLease(ctx, rt, owner)
	if fl != nil {
		if size, err := p.store.Stat(ctx, fl.blob); err == nil {
			fl.release(ctx)
			return fillOutcome{size: size}, nil
		}
	} else {
		var size int64
		var err error
		if fl, size, err = p.acquireLease(ctx, rt); err != nil || fl == nil {
			return fillOutcome{size: size}, err
		}
	}
	src, err := p.openBlob(ctx, rt)
	if err != nil {
		fl.release(ctx)
		return fillOutcome{}, err
	}
	if err := p.overCap(rt, src.resp.ContentLength); err != nil {
		src.close()
		fl.release(ctx)
		return fillOutcome{}, err
	}
	f.size, f.redirectable = src.resp.ContentLength, false
	var sink *spool
	switch planFill(p.limits, f) {
	case planBackground:
		// Lambda: a fill that may outlast this invocation runs in its own,
		// under the lease taken here.
		src.close()
		p.fillBehind(ctx, rt, fl)
		return fillOutcome{size: f.size, handedOff: true}, nil
	case planStream:
		if sink, err = newSpool(p.cfg.SpoolDir, f.size); err != nil {
			p.log.Warn("fill not streamed: no spool", "digest", rt.digest.String(), "cause", err.Error())
			sink = nil
		}
	}
	var size int64
	if sink == nil {
		defer fl.release(ctx)
	} else {
		key := fillKey(rt)
		p.spools.put(key, sink)
		// Readers get the last byte once the upstream's bytes are all in
		// and verified (copyBlob), not once the blob is published: the
		// spool stays joinable until it is (joinStream), so a request
		// meanwhile streams it too rather than start a second fill. The
		// lease is let go first, so that a client that hears of a failure
		// and retries at once starts a new fill.
		defer func() {
			fl.release(ctx)
			p.spools.remove(key, sink)
			sink.finish(err)
		}()
	}
	size, err = fl.hold(ctx, func(ctx context.Context) (int64, error) { return p.copyBlob(ctx, rt, src, sink) })
	return fillOutcome{size: size}, err
}

// fillBehind starts a fill that outlives the request: in the local server a
// goroutine; in Lambda an asynchronous invocation of the function, under
// fl (a lease the caller holds) or a lease taken here. No invocation starts
// while another holder's lease is live: a loop of requests for one blob
// starts one job per lease lifetime, not one per request.
func (p *Proxy) fillBehind(ctx context.Context, rt route, fl *fillLease) {
	if !p.limits.requestBound {
		go p.fill(context.WithoutCancel(ctx), rt, fillFacts{size: -1, background: true})
		return
	}
	if fl == nil {
		if fl = p.leaseForJob(ctx, rt); fl == nil {
			return
		}
	}
	job := FillJob{Upstream: rt.up.Host(), Name: rt.name, Digest: rt.digest, Lease: fl.owner}
	if err := p.cfg.BackgroundFill(context.WithoutCancel(ctx), job); err != nil {
		p.log.Warn("background fill could not start", "digest", rt.digest.String(), "cause", err.Error())
		fl.release(ctx)
	}
}

// RunFill runs a FillJob (the Lambda handler calls it for the function's
// own asynchronous invocations). It validates the job like a request.
func (p *Proxy) RunFill(ctx context.Context, job FillJob) error {
	up, ok := p.lookup(job.Upstream)
	if !ok {
		return fmt.Errorf("fill job for unconfigured upstream %q", job.Upstream)
	}
	if err := validName(job.Name); err != nil {
		return err
	}
	if err := job.Digest.Validate(); err != nil {
		return err
	}
	rt := route{kind: routeBlob, name: job.Name, digest: job.Digest}
	if err := bind(&rt, up); err != nil {
		return err
	}
	if job.Lease == "" {
		if _, err := p.store.Stat(ctx, blobKey(rt.digest)); err == nil {
			return nil // filled meanwhile
		}
	}
	_, err := p.fillNow(ctx, rt, fillFacts{size: -1, background: true}, job.Lease)
	if err != nil {
		p.noteFillFailure(ctx, rt, err)
	}
	return err
}

// waitForBlob polls the store for a blob another invocation is filling,
// for at most FillWait. It stops early if a fill that started after since
// is known to have failed (fillfail.go).
func (p *Proxy) waitForBlob(ctx context.Context, rt route, since time.Time) (int64, error) {
	deadline := p.now().Add(p.cfg.FillWait)
	backoff := 100 * time.Millisecond
	for {
		if size, err := p.store.Stat(ctx, blobKey(rt.digest)); err == nil {
			return size, nil
		}
		if p.fillFailedSince(ctx, rt.digest, since) {
			return 0, errFillFailed()
		}
		if err := p.pause(ctx, deadline, &backoff); err != nil {
			return 0, err
		}
	}
}

// pause waits out one polling interval (doubling it, up to 2s) unless the
// deadline has passed or the request ended.
func (p *Proxy) pause(ctx context.Context, deadline time.Time, backoff *time.Duration) error {
	if p.now().After(deadline) {
		return errFillPending()
	}
	select {
	case <-ctx.Done():
		return ErrUnavailable.With("request ended while waiting for a fill", ctx.Err())
	case <-time.After(*backoff):
	}
	*backoff = min(*backoff*2, 2*time.Second)
	return nil
}

// ErrFillPending is a 503 for a blob another request or instance is still
// fetching; it has its own identity so a fill that gave up waiting is not
// mistaken for one that failed.
var ErrFillPending = &Error{Code: "UNAVAILABLE", Status: http.StatusServiceUnavailable, Message: "the blob is still being fetched from upstream; retry shortly"}

func errFillPending() *Error { return ErrFillPending.After(5 * time.Second) }

// retryLater is a 503 UNAVAILABLE with Retry-After: the registry/2.0 code
// for a server that cannot answer now (TOOMANYREQUESTS is a 429 about the
// client's own rate).
func retryLater(msg string) *Error {
	return ErrUnavailable.With(msg, nil).After(5 * time.Second)
}

// upstreamBlob is an upstream blob GET whose body is being read.
type upstreamBlob struct {
	resp   *http.Response
	body   *idleReader
	cancel context.CancelFunc
}

func (b *upstreamBlob) close() {
	b.body.stop()
	b.resp.Body.Close()
	b.cancel()
}

// openBlob starts the upstream GET of a fill. A 404 is remembered for a
// short while (see knownAbsent).
func (p *Proxy) openBlob(ctx context.Context, rt route) (*upstreamBlob, error) {
	if rt.up.backingOff(p.now()) {
		return nil, ErrTooManyRequests.With("upstream asked the mirror to back off and the blob is not cached", nil)
	}
	// A stalled upstream body is cut after idleBodyTimeout without bytes.
	rctx, cancel := context.WithCancel(ctx)
	resp, err := rt.up.do(rctx, http.MethodGet, rt.name, "blobs/"+rt.digest.String(), nil)
	if err != nil {
		cancel()
		return nil, ErrUnavailable.With("upstream registry unreachable", err)
	}
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		rt.up.noteFailure(resp, p.now())
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		if resp.StatusCode == http.StatusNotFound {
			p.cache.absent.put(fillKey(rt), struct{}{}, p.now())
		}
		return nil, upstreamError(resp, ErrBlobUnknown, p.now())
	}
	return &upstreamBlob{resp: resp, body: newIdleReader(resp.Body, idleBodyTimeout, cancel), cancel: cancel}, nil
}

// copyBlob streams an opened upstream blob into the store, verifying its
// length and digest before publishing it; it closes src. A big blob from
// an upstream that honours Range is fetched as parallel ranges
// (ranged.go). With a spool (clients streaming the blob), the upstream's
// bytes go to the spool and the upload reads them from there: clients get
// the bytes at the upstream's pace, not the store's, and the last byte as
// soon as the bytes are verified; the publish (and, in fillNow, the lease
// release) follows without holding them. A client that got bad bytes
// fails its own digest check; the upload cannot publish them, as the
// spool never gives a reader the last byte of unverified bytes.
func (p *Proxy) copyBlob(ctx context.Context, rt route, src *upstreamBlob, sink *spool) (int64, error) {
	defer src.close()
	// A measurement of the network, not a cache decision: the real clock.
	// A test's clock stands still or jumps hours, and the fill rate it
	// gave would steer PolicyAuto (redirectPays) wrongly.
	began := time.Now()
	up, err := p.store.Create(ctx, blobKey(rt.digest))
	if err != nil {
		return 0, ErrUnavailable.With("cache storage unavailable", err)
	}
	published := false
	defer func() {
		if !published {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := up.Abort(actx); err != nil {
				p.log.Warn("abort upload", "digest", rt.digest.String(), "cause", err.Error())
			}
		}
	}()
	var body io.Reader = src.body
	// Only a blob of more parts than run at once: for smaller ones the
	// extra requests and part buffers cost more than they win.
	if size := src.resp.ContentLength; p.cfg.FillParts > 1 && size > int64(p.cfg.FillParts)*p.cfg.FillPartSize {
		rf := newRangedFill(ctx, src.body, src.close, size, p.cfg.FillPartSize, p.cfg.FillParts, func(ctx context.Context, off, n int64) (*http.Response, error) {
			rng := http.Header{"Range": {fmt.Sprintf("bytes=%d-%d", off, off+n-1)}}
			return rt.up.do(ctx, http.MethodGet, rt.name, "blobs/"+rt.digest.String(), rng)
		})
		defer rf.stop()
		body = rf
	}
	body = p.capped(rt, body)
	var n int64
	if sink == nil {
		// io.Copy lets the upload read straight into its part buffers.
		n, err = p.verifiedCopy(rt, src.resp.ContentLength, up, body)
	} else {
		n, err = p.spooledCopy(ctx, rt, src.resp.ContentLength, up, body, sink)
	}
	if err != nil {
		return 0, err
	}
	err = up.Commit(ctx)
	published = err == nil || errors.Is(err, fs.ErrExist)
	if !published {
		return 0, ErrUnavailable.With("cache storage unavailable", fmt.Errorf("publish %s: %w", rt.digest, err))
	}
	rt.up.fillRate.note(n, time.Since(began))
	if sink == nil {
		statsFrom(ctx).filledBytes.Add(n) // streamed: counted at the verdict
	}
	p.cache.link(ctx, rt.up.Host(), rt.name, rt.digest)
	p.log.Info("blob filled", "digest", rt.digest.String(), "bytes", n)
	return n, nil
}

// verifiedCopy copies body to dst while hashing it, and fails unless the
// bytes are want long (if want ≥ 0) and hash to rt.digest.
func (p *Proxy) verifiedCopy(rt route, want int64, dst io.Writer, body io.Reader) (int64, error) {
	verifier := rt.digest.Algorithm().Hash()
	n, err := io.Copy(dst, io.TeeReader(body, verifier))
	if e := (*Error)(nil); errors.As(err, &e) && errors.Is(e, ErrBlobTooLarge) {
		return 0, e // nothing published: the deferred Abort drops the upload
	}
	if err != nil {
		return 0, ErrUnavailable.With("blob transfer from upstream failed; nothing was stored", fmt.Errorf("fill %s after %d bytes: %w", rt.digest, n, err))
	}
	if want >= 0 && n != want {
		return 0, ErrUpstreamBadBytes.With("", fmt.Errorf("fill %s: got %d bytes, upstream announced %d", rt.digest, n, want))
	}
	if got := digest.NewDigest(rt.digest.Algorithm(), verifier); got != rt.digest {
		return 0, ErrUpstreamBadBytes.With("", fmt.Errorf("fill %s: upstream bytes hash to %s", rt.digest, got))
	}
	return n, nil
}

// spooledCopy copies body into the spool, verifying it, while the upload
// reads the spool in a goroutine of its own; it gives the spool its
// verdict as soon as the bytes are in and verified, then waits for the
// upload to have read them all (both end before it returns: nothing may
// outlive a Lambda invocation). An upload that fails does not stop the
// spool: its clients still get the verified bytes, and the fill fails
// without publishing. Bytes that fail verification stop the upload short
// of the held-back byte; the failure reaches the clients from fillNow,
// once the upload is aborted and the lease let go, so that a client
// retrying at once starts a new fill rather than join the failed one.
func (p *Proxy) spooledCopy(ctx context.Context, rt route, want int64, up io.Writer, body io.Reader, sink *spool) (int64, error) {
	if !sink.join() {
		return 0, ErrUnavailable.With("blob transfer from upstream failed; nothing was stored", errors.New("spool closed before the fill"))
	}
	uctx, stopUpload := context.WithCancel(ctx)
	defer stopUpload()
	uploaded := make(chan error, 1)
	go func() {
		defer sink.release()
		_, err := io.Copy(up, sink.reader(uctx))
		uploaded <- err
	}()
	n, err := p.verifiedCopy(rt, want, sink, body)
	if err == nil {
		// Counted here, not at the publish: the request that started the
		// fill may have ended (and logged its metrics) by then.
		statsFrom(ctx).filledBytes.Add(n)
		sink.verdict(nil)
	} else {
		stopUpload()
	}
	uerr := <-uploaded
	if err != nil {
		return 0, err
	}
	if uerr != nil {
		return 0, ErrUnavailable.With("cache storage unavailable", fmt.Errorf("upload %s: %w", rt.digest, uerr))
	}
	return n, nil
}

// absentTTL is how long an upstream's 404 for a blob is believed: ten
// identical GETs of a blob the upstream does not have cost one upstream
// GET, and no lease writes, within it. Short, so a blob pushed upstream
// just after is soon found.
const absentTTL = 30 * time.Second

// knownAbsent fails with BLOB_UNKNOWN if the upstream answered 404 for
// this blob in this repository moments ago.
func (p *Proxy) knownAbsent(rt route) error {
	if _, ok := p.cache.absent.get(fillKey(rt), p.now(), absentTTL); ok {
		return ErrBlobUnknown.With("", fmt.Errorf("upstream %s answered 404 for %s less than %s ago", rt.up.Host(), rt.digest, absentTTL))
	}
	return nil
}

// DefaultMaxFills bounds the blob fills one process runs at once. Each
// holds an upstream connection and, with the S3 store, up to
// S3 upload concurrency + 1 part buffers (5 × 8 MiB by default).
const DefaultMaxFills = 16

// fillSlots bounds the fills a process runs at once, detached ones (whose
// clients left) included, so memory and upstream connections stay bounded
// whatever clients do. A fill beyond it is refused at once with 503 and
// Retry-After rather than queued: a queue would hold the request as long.
type fillSlots chan struct{}

// take claims a slot; ok is false when all are in use.
func (s fillSlots) take() (done func(), ok bool) {
	select {
	case s <- struct{}{}:
		return func() { <-s }, true
	default:
		return nil, false
	}
}

func errFillCapacity() *Error {
	return retryLater("the mirror is fetching as many blobs as it may at once; retry shortly")
}

// idleBodyTimeout bounds the silence of an upstream body mid-transfer.
const idleBodyTimeout = 60 * time.Second

// idleReader cancels a transfer that makes no progress for a while: a
// stalled upstream must not hold a fill (and its waiters) for the whole
// fill timeout.
type idleReader struct {
	r     io.Reader
	d     time.Duration
	timer *time.Timer
}

func newIdleReader(r io.Reader, d time.Duration, cancel context.CancelFunc) *idleReader {
	return &idleReader{r: r, d: d, timer: time.AfterFunc(d, cancel)}
}

func (i *idleReader) Read(p []byte) (int, error) {
	n, err := i.r.Read(p)
	if n > 0 {
		i.timer.Reset(i.d)
	}
	return n, err
}

func (i *idleReader) stop() { i.timer.Stop() }
