package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

func blobKey(d digest.Digest) string {
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

func (p *Proxy) serveBlob(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route) error {
	key := blobKey(rt.digest)
	cache := cacheHit
	size, known := p.known.get(rt.digest, p.now(), knownBlobsTTL)
	var err error
	if !known {
		size, err = p.store.Stat(ctx, key)
	}
	switch {
	case err == nil:
		if err := p.checkLinkedBlob(ctx, rt); err != nil {
			return err
		}
	case !errors.Is(err, fs.ErrNotExist):
		return ErrUnavailable.With("cache storage unavailable", err)
	case r.Method == http.MethodHead:
		// A HEAD must not cost a download: ask the upstream for the size.
		size, err := p.headUpstreamBlob(ctx, rt)
		if err != nil {
			return err
		}
		blobHeaders(w.Header(), rt.digest, size, cachePassthrough)
		w.WriteHeader(http.StatusOK)
		return nil
	default:
		cache = cacheMiss
		var redirected bool
		size, redirected, err = p.missing(ctx, w, rt)
		if err != nil || redirected {
			return err
		}
		// The fill may have been another repository's (links.go).
		if err := p.checkLinkedBlob(ctx, rt); err != nil {
			return err
		}
	}
	if !known {
		p.known.put(rt.digest, size, p.now())
	}
	blobHeaders(w.Header(), rt.digest, size, cache)
	var sign signFunc
	if ps, ok := p.store.(Presigner); ok {
		sign = ps.PresignGet
	}
	if r.Method == http.MethodHead {
		hp, ok := p.store.(HeadPresigner)
		if !p.cfg.NoContentLength || !ok {
			w.WriteHeader(http.StatusOK)
			return nil
		}
		// The length would not reach the client: S3's answer carries it.
		sign = hp.PresignHead
	}
	if sign != nil {
		u, err := p.presign(ctx, r.Method+" "+key, key, sign)
		if err != nil {
			return ErrUnavailable.With("cache storage unavailable", err)
		}
		h := w.Header()
		h.Del("Content-Type")
		h.Set("Location", u)
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusTemporaryRedirect)
		return nil
	}
	rc, _, err := p.store.Get(ctx, key)
	if err != nil {
		return ErrUnavailable.With("cache storage unavailable", err)
	}
	defer rc.Close()
	if rs, ok := rc.(io.ReadSeeker); ok {
		// Range requests (dockerd resumes with them) get 206.
		w.Header().Del("Content-Length")
		http.ServeContent(w, r, "", time.Time{}, rs)
		return nil
	}
	w.WriteHeader(http.StatusOK)
	io.Copy(w, rc)
	return nil
}

func blobHeaders(h http.Header, d digest.Digest, size int64, cache string) {
	h.Set("Content-Type", "application/octet-stream")
	h.Set(headerDigest, d.String())
	h.Set("ETag", `"`+d.String()+`"`)
	h.Set(headerCache, cache)
	setLength(h, size)
}

// headUpstreamBlob learns a blob's size without downloading it. Some
// registries refuse HEAD on blobs (ECR Public answers 401 even with a
// token, aws/containers-roadmap#2671; GHCR's blob storage answers 403); a
// one-byte ranged GET tells the size too (206 with Content-Range).
func (p *Proxy) headUpstreamBlob(ctx context.Context, rt route) (int64, error) {
	if rt.up.backingOff(p.now()) {
		return 0, ErrTooManyRequests.With("upstream asked the mirror to back off and the blob is not cached", nil)
	}
	ctx, cancel := context.WithTimeout(ctx, rt.up.timeouts.manifest)
	defer cancel()
	resp, err := rt.up.do(ctx, http.MethodHead, rt.name, "blobs/"+rt.digest.String(), nil)
	if err != nil {
		return 0, ErrUnavailable.With("upstream registry unreachable", err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK && resp.ContentLength >= 0 {
		return resp.ContentLength, nil
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusUnauthorized, http.StatusForbidden, http.StatusMethodNotAllowed:
	default:
		return 0, upstreamError(resp, ErrBlobUnknown)
	}
	resp, err = rt.up.do(ctx, http.MethodGet, rt.name, "blobs/"+rt.digest.String(), http.Header{"Range": {"bytes=0-0"}})
	if err != nil {
		return 0, ErrUnavailable.With("upstream registry unreachable", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode == http.StatusPartialContent {
		// Content-Range: bytes 0-0/12345
		if _, total, ok := strings.Cut(resp.Header.Get("Content-Range"), "/"); ok {
			if n, err := strconv.ParseInt(total, 10, 64); err == nil && n >= 0 {
				return n, nil
			}
		}
	}
	if resp.StatusCode == http.StatusOK && resp.ContentLength >= 0 {
		return resp.ContentLength, nil
	}
	return 0, upstreamError(resp, ErrBlobUnknown)
}

// Large-blob policies: what a GET miss does when a fill may outlast the
// client's patience (or a Lambda invocation).
const (
	PolicyWait     = "wait"              // fill, then redirect to the store
	PolicyUpstream = "redirect-upstream" // send the client to the upstream's signed blob URL, fill in the background
	PolicyAuto     = "auto"              // redirect-upstream for blobs of at least LargeBlobSize, else wait
)

// FillJob is a blob fill to run outside the request that needed it: in
// Lambda, an asynchronous invocation of the function itself (see RunFill).
type FillJob struct {
	Upstream string        `json:"upstream"`
	Name     string        `json:"name"`
	Digest   digest.Digest `json:"digest"`
}

// missing answers a GET for a blob that is not in the store. It returns the
// size once the blob is stored, or redirected when the client was sent to
// the upstream's own blob URL.
func (p *Proxy) missing(ctx context.Context, w http.ResponseWriter, rt route) (size int64, redirected bool, err error) {
	large := p.cfg.LargeBlobPolicy == PolicyUpstream
	// The size costs a HEAD (free on Docker Hub): ask only where it can
	// change the answer, an upstream with a CDN to send clients to.
	if p.cfg.LargeBlobPolicy == PolicyAuto && rt.up.redirectsBlobs.Load() {
		if n, err := p.headUpstreamBlob(ctx, rt); err == nil && n >= p.cfg.LargeBlobSize {
			large = true
		}
	}
	if large && p.cfg.LargeBlobPolicy != PolicyWait {
		loc, err := rt.up.blobLocation(ctx, rt.name, rt.digest)
		if err == nil && loc != "" {
			p.startFill(ctx, rt)
			w.Header().Set(headerCache, cacheUpstream)
			w.Header().Set("Location", loc)
			w.Header().Set("Content-Length", "0")
			w.WriteHeader(http.StatusTemporaryRedirect)
			return 0, true, nil
		}
	}
	size, err = p.fill(ctx, rt)
	if errors.Is(err, errFillElsewhere) {
		// Lambda: a fill that may outlast this invocation runs in its own.
		since := p.now()
		p.startFill(ctx, rt)
		size, err = p.waitForBlob(ctx, rt, since)
	}
	return size, false, err
}

// errFillElsewhere stops a fill inside a Lambda request once the upstream's
// Content-Length shows it may outlast the invocation; it is then run in an
// invocation of its own.
var errFillElsewhere = errors.New("blob too large to fill inside a request")

// backgroundKey marks the context of a fill running in its own invocation.
type backgroundKey struct{}

// startFill begins a fill that outlives the request: an asynchronous
// invocation in Lambda, a goroutine in the local server.
func (p *Proxy) startFill(ctx context.Context, rt route) {
	if p.cfg.BackgroundFill != nil {
		job := FillJob{Upstream: rt.up.Host(), Name: rt.name, Digest: rt.digest}
		if err := p.cfg.BackgroundFill(context.WithoutCancel(ctx), job); err != nil {
			p.log.Warn("background fill could not start", "digest", rt.digest.String(), "cause", err.Error())
		}
		return
	}
	go p.fill(context.WithoutCancel(ctx), rt)
}

// waitForBlob polls the store for a blob another invocation is filling,
// for at most FillWait.
// It stops early if the fill is known to have failed.
func (p *Proxy) waitForBlob(ctx context.Context, rt route, since time.Time) (int64, error) {
	deadline := p.now().Add(p.cfg.LeaseWait)
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

const fillPendingMessage = "the blob is still being fetched from upstream; retry shortly"

func errFillPending() *Error {
	return ErrUnavailable.With(fillPendingMessage, nil).After(5 * time.Second)
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
	if _, err := p.store.Stat(ctx, blobKey(rt.digest)); err == nil {
		return nil // filled meanwhile
	}
	_, err := p.fillNow(context.WithValue(ctx, backgroundKey{}, true), rt)
	if err != nil {
		p.noteFillFailure(ctx, rt, err)
	}
	return err
}

// fill copies a missing blob from upstream into the store. Concurrent
// requests for the same blob in this process share one fill. The fill runs
// on a context detached from the client: a client that gives up (and will
// retry) should not waste the bytes already copied. In the local server the
// fill runs in its own goroutine and a request waits for at most FillWait;
// in Lambda it runs in the request (nothing may outlive it).
func (p *Proxy) fill(ctx context.Context, rt route) (int64, error) {
	if p.cfg.BackgroundFill != nil {
		return p.fills.do(ctx, rt.digest.String(), false, 0, func() (int64, error) { return p.fillNow(ctx, rt) })
	}
	return p.fills.do(ctx, rt.digest.String(), true, p.cfg.LeaseWait, func() (int64, error) { return p.fillNow(ctx, rt) })
}

// fillNow fills under the store's lease, if it has leases.
func (p *Proxy) fillNow(ctx context.Context, rt route) (int64, error) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.FillTimeout)
	defer cancel()
	fill := func(ctx context.Context) (int64, error) { return p.fillBlob(ctx, rt) }
	if l, ok := p.store.(Leaser); ok {
		return p.fillShared(fctx, l, rt, fill)
	}
	return fill(fctx)
}

func (p *Proxy) fillBlob(ctx context.Context, rt route) (int64, error) {
	key := blobKey(rt.digest)
	if rt.up.backingOff(p.now()) {
		return 0, ErrTooManyRequests.With("upstream asked the mirror to back off and the blob is not cached", nil)
	}
	// A stalled upstream body is cut after idleBodyTimeout without bytes.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := rt.up.do(rctx, http.MethodGet, rt.name, "blobs/"+rt.digest.String(), nil)
	if err != nil {
		return 0, ErrUnavailable.With("upstream registry unreachable", err)
	}
	defer resp.Body.Close()
	body := newIdleReader(resp.Body, idleBodyTimeout, cancel)
	defer body.stop()
	if resp.StatusCode != http.StatusOK {
		rt.up.noteFailure(resp, p.now())
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return 0, upstreamError(resp, ErrBlobUnknown)
	}
	if p.cfg.BackgroundFill != nil && ctx.Value(backgroundKey{}) == nil && resp.ContentLength >= p.cfg.LargeBlobSize {
		return 0, errFillElsewhere
	}
	up, err := p.store.Create(ctx, key)
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
	verifier := rt.digest.Algorithm().Hash()
	// io.Copy lets the upload read straight into its part buffers.
	n, err := io.Copy(up, io.TeeReader(body, verifier))
	if err != nil {
		return 0, ErrUnavailable.With("blob transfer from upstream failed; nothing was stored", fmt.Errorf("fill %s after %d bytes: %w", rt.digest, n, err))
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return 0, ErrUpstreamBadBytes.With("", fmt.Errorf("fill %s: got %d bytes, upstream announced %d", rt.digest, n, resp.ContentLength))
	}
	if got := digest.NewDigest(rt.digest.Algorithm(), verifier); got != rt.digest {
		return 0, ErrUpstreamBadBytes.With("", fmt.Errorf("fill %s: upstream bytes hash to %s", rt.digest, got))
	}
	err = up.Commit(ctx)
	published = err == nil || errors.Is(err, fs.ErrExist)
	if !published {
		return 0, ErrUnavailable.With("cache storage unavailable", fmt.Errorf("publish %s: %w", rt.digest, err))
	}
	statsFrom(ctx).filledBytes.Add(n)
	p.link(ctx, rt.up, rt.name, rt.digest)
	p.log.Info("blob filled", "digest", rt.digest.String(), "bytes", n)
	return n, nil
}

// flightGroup runs one call per key at a time; later callers wait for the
// first one's result or for their own context to end.
type flightGroup struct {
	mu    sync.Mutex
	calls map[string]*flight
}

type flight struct {
	done chan struct{}
	size int64
	err  error
}

// do runs fn once per key. With async, fn runs in its own goroutine and
// every caller waits at most wait for it (the fill carries on); otherwise
// the first caller runs it and later callers wait for its result.
func (g *flightGroup) do(ctx context.Context, key string, async bool, wait time.Duration, fn func() (int64, error)) (int64, error) {
	g.mu.Lock()
	if g.calls == nil {
		g.calls = map[string]*flight{}
	}
	f, running := g.calls[key]
	if !running {
		f = &flight{done: make(chan struct{})}
		g.calls[key] = f
	}
	g.mu.Unlock()

	if !running {
		run := func() {
			defer func() {
				g.mu.Lock()
				delete(g.calls, key)
				g.mu.Unlock()
				close(f.done)
			}()
			f.size, f.err = fn()
		}
		if !async {
			run()
			return f.size, f.err
		}
		go run()
	}
	var timeout <-chan time.Time
	if async {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-f.done:
		return f.size, f.err
	case <-timeout:
		return 0, errFillPending()
	case <-ctx.Done():
		return 0, ErrUnavailable.With("request ended while waiting for a fill", ctx.Err())
	}
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

// Blobs are immutable, so knowing one exists saves a store request on
// every hit. Entries expire so that objects removed by a bucket lifecycle
// rule are noticed.
const knownBlobsTTL = 10 * time.Minute

// signFunc presigns one request for an object in the store.
type signFunc func(ctx context.Context, key string, ttl time.Duration) (string, error)

// presign reuses a presigned URL for the first half of its life: signing
// costs more than the rest of a hit, and a URL is as good for one client as
// for the next. memoKey names the request (method and key).
func (p *Proxy) presign(ctx context.Context, memoKey, key string, sign signFunc) (string, error) {
	reuse := p.cfg.PresignTTL / 2
	if u, ok := p.presigned.get(memoKey, p.now(), reuse); ok {
		return u, nil
	}
	u, err := sign(ctx, key, p.cfg.PresignTTL)
	if err != nil {
		return "", err
	}
	p.presigned.put(memoKey, u, p.now())
	return u, nil
}
