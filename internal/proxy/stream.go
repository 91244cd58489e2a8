package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
)

// streamMissing fills a missing blob and streams it to the client as it
// arrives: the 200 goes out with the first bytes, not once the blob is in
// the store. The fill itself is p.fill's (one per blob, on a context
// detached from the client, under the lease): this request joins its
// spool, whoever started it. A fill that ends before a spool appears (the
// blob was published meanwhile, or the fill failed at once, or in Lambda
// it was handed to a background fill or not streamed) is answered as
// without streaming. redirected reports that the response was written.
func (p *Proxy) streamMissing(ctx context.Context, w http.ResponseWriter, rt route, f fillFacts) (size int64, redirected bool, err error) {
	type result struct {
		out fillOutcome
		err error
	}
	since := p.now()
	res := make(chan result, 1)
	go func() {
		out, err := p.fill(ctx, rt, f)
		res <- result{out, err}
	}()
	// Nothing may outlive a Lambda invocation: wait for the fill there.
	finish := func() {
		if p.limits.requestBound {
			<-res
		}
	}
	key := fillKey(rt)
	for {
		sp, changed := p.spools.join(key)
		if sp != nil {
			_, err := p.sendSpool(ctx, w, rt, sp)
			finish()
			return 0, err == nil, err
		}
		select {
		case r := <-res:
			if r.err == nil && r.out.handedOff {
				size, err := p.waitForBlob(ctx, rt, since)
				return size, false, err
			}
			return r.out.size, false, r.err
		case <-changed:
		case <-ctx.Done():
			finish()
			return 0, false, ErrUnavailable.With("request ended while waiting for a fill", ctx.Err())
		}
	}
}

// joinStream answers a blob GET (not a Range request) or HEAD from a fill
// of it in progress in this process, if there is one: one that is
// streaming the blob, or publishing it after its last byte went out. A
// GET streams the spool; a HEAD gets the length the upstream announced
// (none announced: the HEAD is answered as without a fill). It is asked
// before the store: a fill leaves the spools only once the blob is
// published, so a request that finds no spool finds the blob in the store,
// and a pull that follows a cold one never asks the upstream. joined
// reports that it answered (err is then the answer's, as from sendSpool).
func (p *Proxy) joinStream(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route) (joined bool, err error) {
	switch {
	case r.Method == http.MethodHead:
	case r.Method != http.MethodGet || r.Header.Get("Range") != "":
		return false, nil
	}
	sp, _ := p.spools.join(fillKey(rt))
	if sp == nil {
		return false, nil
	}
	if r.Method == http.MethodHead {
		defer sp.release()
		if sp.size < 0 {
			return false, nil
		}
		blobHeaders(w.Header(), rt.digest, sp.size, cacheMiss)
		w.WriteHeader(http.StatusOK)
		return true, nil
	}
	_, err = p.sendSpool(ctx, w, rt, sp)
	return true, err
}

// sendSpool writes a joined spool to the client and releases it. A fill
// that fails before the first byte is sent gets its own error answer; one
// that fails later cuts the transfer (the client sees a short body, never
// a complete wrong one: the spool holds the last byte back until the
// bytes are verified). A client that hangs up ends only its own stream.
// It returns the bytes sent if the whole verified blob was (else -1), and
// an error only when nothing was written.
func (p *Proxy) sendSpool(ctx context.Context, w http.ResponseWriter, rt route, sp *spool) (sent int64, err error) {
	defer sp.release()
	r := sp.reader(ctx)
	buf := make([]byte, 64<<10)
	n, err := r.Read(buf)
	if n == 0 && err != nil && err != io.EOF {
		return -1, fillError(err)
	}
	h := w.Header()
	blobHeaders(h, rt.digest, sp.size, cacheMiss)
	if sp.size < 0 {
		h.Del("Content-Length")
	}
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	for {
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return -1, nil // the client left; the fill goes on
			}
			sent += int64(n)
			rc.Flush()
		}
		if err == io.EOF {
			return sent, nil
		}
		if err != nil && ctx.Err() != nil {
			return -1, nil // the client left while waiting for bytes; the fill goes on
		}
		if err != nil {
			p.log.Warn("streamed fill cut", "digest", rt.digest.String(), "cause", err.Error())
			if !p.limits.requestBound {
				// Cut the connection so the client cannot take the short
				// body for a whole one (net/http's documented abort).
				panic(http.ErrAbortHandler)
			}
			return -1, nil
		}
		n, err = r.Read(buf)
	}
}

// fillError is the answer for a spool that failed before its first byte:
// the fill's own error if it has one.
func fillError(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return ErrUnavailable.With("blob transfer from upstream failed; nothing was stored", err)
}
