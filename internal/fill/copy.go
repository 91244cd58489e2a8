package fill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/pullthrough/pullthrough/internal/cache"
	"github.com/pullthrough/pullthrough/internal/oci"
	"github.com/pullthrough/pullthrough/internal/upstream"
)

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
func (e *Engine) copyBlob(ctx context.Context, b Blob, src *upstream.Blob, sink *spool) (int64, error) {
	plain := newResumingBody(ctx, b, src, e.log) // resume.go
	defer plain.Close()
	// A measurement of the network, not a cache decision: the real clock.
	// A test's clock stands still or jumps hours, and the fill rate it
	// gave would steer PolicyAuto (redirectPays) wrongly.
	began := time.Now()
	up, err := e.store.Create(ctx, cache.BlobKey(b.Digest))
	if err != nil {
		return 0, oci.ErrUnavailable.With("cache storage unavailable", err)
	}
	published := false
	defer func() {
		if !published {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := up.Abort(actx); err != nil {
				e.log.Warn("abort upload", "digest", b.Digest.String(), "cause", err.Error())
			}
		}
	}()
	e.log.Info("fill started", "digest", b.Digest.String(), "name", b.Name, "upstream", b.Up.Host(), "bytes_announced", src.Size)
	var body io.Reader = plain
	// Only a blob of more parts than run at once: for smaller ones the
	// extra requests and part buffers cost more than they win.
	if size := src.Size; e.cfg.FillParts > 1 && size > int64(e.cfg.FillParts)*e.cfg.FillPartSize {
		rf := newRangedFill(ctx, plain, func() { plain.Close() }, size, e.cfg.FillPartSize, e.cfg.FillParts, func(ctx context.Context, off, n int64) (*upstream.Blob, error) {
			return b.Up.GetBlobRange(ctx, b.Name, b.Digest, off, n)
		})
		rf.resume = func(ctx context.Context, part *upstream.Blob, off, end int64) io.ReadCloser {
			return newResumingPart(ctx, b, part, off, end, size, e.log)
		}
		defer rf.stop()
		body = rf
	}
	body = e.capped(b, body)
	progress := e.progress(b, src.Size, began)
	defer progress.stop()
	body = progress.counting(body)
	var n int64
	if sink == nil {
		// io.Copy lets the upload read straight into its part buffers.
		n, err = e.verifiedCopy(b, src.Size, up, body)
	} else {
		n, err = e.spooledCopy(ctx, b, src.Size, up, body, sink)
	}
	if err != nil {
		return 0, err
	}
	err = up.Commit(ctx)
	published = err == nil || errors.Is(err, fs.ErrExist)
	if !published {
		return 0, oci.ErrUnavailable.With("cache storage unavailable", fmt.Errorf("publish %s: %w", b.Digest, err))
	}
	b.Up.NoteFill(n, time.Since(began))
	if sink == nil {
		e.filled(ctx, n) // streamed: counted at the verdict
	}
	e.cache.Link(ctx, b.Up.Host(), b.Name, b.Digest)
	e.log.Info("blob filled", "digest", b.Digest.String(), "bytes", n, "duration_ms", time.Since(began).Milliseconds())
	return n, nil
}

// verifiedCopy copies body to dst while hashing it, and fails unless the
// bytes are want long (if want ≥ 0) and hash to b.Digest.
func (e *Engine) verifiedCopy(b Blob, want int64, dst io.Writer, body io.Reader) (int64, error) {
	verifier := b.Digest.Algorithm().Hash()
	n, err := io.Copy(dst, io.TeeReader(body, verifier))
	if e := (*oci.Error)(nil); errors.As(err, &e) && errors.Is(e, ErrBlobTooLarge) {
		return 0, e // nothing published: the deferred Abort drops the upload
	}
	if err != nil {
		return 0, oci.ErrUnavailable.With("blob transfer from upstream failed; nothing was stored", fmt.Errorf("fill %s after %d bytes: %w", b.Digest, n, err))
	}
	if want >= 0 && n != want {
		return 0, oci.ErrUpstreamBadBytes.With("", fmt.Errorf("fill %s: got %d bytes, upstream announced %d", b.Digest, n, want))
	}
	if got := digest.NewDigest(b.Digest.Algorithm(), verifier); got != b.Digest {
		return 0, oci.ErrUpstreamBadBytes.With("", fmt.Errorf("fill %s: upstream bytes hash to %s", b.Digest, got))
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
func (e *Engine) spooledCopy(ctx context.Context, b Blob, want int64, up io.Writer, body io.Reader, sink *spool) (int64, error) {
	if !sink.join() {
		return 0, oci.ErrUnavailable.With("blob transfer from upstream failed; nothing was stored", errors.New("spool closed before the fill"))
	}
	uctx, stopUpload := context.WithCancel(ctx)
	defer stopUpload()
	uploaded := make(chan error, 1)
	go func() {
		defer sink.release()
		_, err := io.Copy(up, sink.reader(uctx, 0))
		uploaded <- err
	}()
	n, err := e.verifiedCopy(b, want, sink, body)
	if err == nil {
		// Counted here, not at the publish: the request that started the
		// fill may have ended (and logged its metrics) by then.
		e.filled(ctx, n)
		sink.verdict(nil)
	} else {
		stopUpload()
	}
	uerr := <-uploaded
	if err != nil {
		return 0, err
	}
	if uerr != nil {
		return 0, oci.ErrUnavailable.With("cache storage unavailable", fmt.Errorf("upload %s: %w", b.Digest, uerr))
	}
	return n, nil
}

// DefaultProgressEvery is how often a fill in progress logs how far it is:
// a long first pull is visibly working.
const DefaultProgressEvery = 15 * time.Second

// fillProgress logs a fill's bytes and rate every ProgressEvery until
// stopped.
type fillProgress struct {
	n    atomic.Int64
	done chan struct{}
	wg   sync.WaitGroup
}

func (e *Engine) progress(b Blob, size int64, began time.Time) *fillProgress {
	every := e.cfg.ProgressEvery
	if every <= 0 {
		every = DefaultProgressEvery
	}
	p := &fillProgress{done: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.done:
				return
			case <-t.C:
				n, secs := p.n.Load(), time.Since(began).Seconds()
				e.log.Info("fill progress", "digest", b.Digest.String(), "bytes", n, "bytes_announced", size,
					"bytes_per_second", int64(float64(n)/max(secs, 1e-3)))
			}
		}
	}()
	return p
}

// counting counts the bytes read through r.
func (p *fillProgress) counting(r io.Reader) io.Reader { return &countingReader{r: r, n: &p.n} }

// stop ends the logging; it returns once the goroutine has (nothing may
// outlive a Lambda invocation).
func (p *fillProgress) stop() {
	close(p.done)
	p.wg.Wait()
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}
