package fill

import (
	"context"
	"io"

	"github.com/pullthrough/pullthrough/internal/oci"
)

// Stream is a fill in progress that a client reads as it arrives. The
// last byte is held back until the bytes are verified: a reader of a fill
// that fails gets an error instead, never a complete wrong body.
type Stream struct {
	sp   *spool
	wait func() // after the client is done: in Lambda, the fill's end
}

// Size is the length the upstream announced, or -1.
func (s *Stream) Size() int64 { return s.sp.size }

// Reader reads the blob from byte off, blocking for bytes not yet filled
// until ctx ends; the blob's last byte comes only once the whole is
// verified. A failed fill ends it with an error.
func (s *Stream) Reader(ctx context.Context, off int64) io.Reader { return s.sp.reader(ctx, off) }

// For is the repository the fill runs for: when it is not the caller's,
// the caller must confirm its own repository's link before it sends a
// byte.
func (s *Stream) For() string { return s.sp.name }

// Close lets the stream go; in Lambda it waits for the fill to end (nothing
// may outlive the invocation). Call it once.
func (s *Stream) Close() {
	s.sp.release()
	if s.wait != nil {
		s.wait()
	}
}

// Join returns a stream of b's fill in progress in this process, if there
// is one: one that is streaming the blob, or publishing it after its last
// byte went out (nil if none). A fill leaves the spools only once the blob
// is published, so a caller that finds no stream finds the blob in the
// store, and a pull that follows a cold one never asks the upstream.
func (e *Engine) Join(b Blob) *Stream {
	sp, _ := e.spools.join(b.key())
	if sp == nil {
		return nil
	}
	return &Stream{sp: sp}
}

// stream fills a missing blob and streams it to the client as it arrives:
// the 200 goes out with the first bytes, not once the blob is in the
// store. The fill itself is e.fill's (one per blob, on a context detached
// from the client, under the lease): this request joins its spool,
// whoever started it. A fill that ends before a spool appears (the blob
// was published meanwhile, or the fill failed at once, or in Lambda it was
// handed to a background fill or not streamed) comes back as its size.
func (e *Engine) stream(ctx context.Context, b Blob, f fillFacts) (Outcome, error) {
	type result struct {
		out fillOutcome
		err error
	}
	since := e.cache.Now()
	res := make(chan result, 1)
	go func() {
		out, err := e.fill(ctx, b, f)
		res <- result{out, err}
	}()
	// Nothing may outlive a Lambda invocation: wait for the fill there.
	var finish func()
	if e.limits.requestBound {
		finish = func() { <-res }
	}
	key := b.key()
	for {
		sp, changed := e.spools.join(key)
		if sp != nil {
			return Outcome{Stream: &Stream{sp: sp, wait: finish}}, nil
		}
		select {
		case r := <-res:
			if r.err == nil && r.out.handedOff {
				size, err := e.waitForBlob(ctx, b, since)
				return Outcome{Size: size}, err
			}
			return Outcome{Size: r.out.size}, r.err
		case <-changed:
		case <-ctx.Done():
			if finish != nil {
				finish()
			}
			return Outcome{}, oci.ErrUnavailable.With("request ended while waiting for a fill", ctx.Err())
		}
	}
}
