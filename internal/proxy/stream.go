package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/pullthrough/pullthrough/internal/fill"
	"github.com/pullthrough/pullthrough/internal/oci"
)

// joinStream answers a blob GET (not a Range request) or HEAD from a fill
// of it in progress in this process, if there is one (fill.Engine.Join): a
// GET streams it; a HEAD gets the length the upstream announced (none
// announced: the HEAD is answered as without a fill). It is asked before
// the store. joined reports that it answered (err is then the answer's, as
// from sendStream).
func (p *Proxy) joinStream(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route) (joined bool, err error) {
	switch {
	case r.Method == http.MethodHead:
	case r.Method != http.MethodGet || r.Header.Get("Range") != "":
		return false, nil
	}
	st := p.fills.Join(fillBlob(rt))
	if st == nil {
		return false, nil
	}
	if r.Method == http.MethodHead {
		defer st.Close()
		if st.Size() < 0 {
			return false, nil
		}
		blobHeaders(w.Header(), rt.digest, st.Size(), cacheMiss)
		w.WriteHeader(http.StatusOK)
		return true, nil
	}
	_, err = p.sendStream(ctx, w, rt, st)
	return true, err
}

// sendStream writes a fill's stream to the client and closes it. A fill
// that fails before the first byte is sent gets its own error answer; one
// that fails later cuts the transfer (the client sees a short body, never
// a complete wrong one: the stream holds the last byte back until the
// bytes are verified). A client that hangs up ends only its own stream.
// It returns the bytes sent if the whole verified blob was (else -1), and
// an error only when nothing was written.
func (p *Proxy) sendStream(ctx context.Context, w http.ResponseWriter, rt route, st *fill.Stream) (sent int64, err error) {
	defer st.Close()
	r := st.Reader(ctx)
	buf := make([]byte, 64<<10)
	n, err := r.Read(buf)
	if n == 0 && err != nil && err != io.EOF {
		return -1, fillError(err)
	}
	h := w.Header()
	blobHeaders(h, rt.digest, st.Size(), cacheMiss)
	if st.Size() < 0 {
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
			if !p.fills.RequestBound() {
				// Cut the connection so the client cannot take the short
				// body for a whole one (net/http's documented abort).
				panic(http.ErrAbortHandler)
			}
			return -1, nil
		}
		n, err = r.Read(buf)
	}
}

// fillError is the answer for a stream that failed before its first byte:
// the fill's own error if it has one (a fill's failures after the upstream
// answered are all OCI errors).
func fillError(err error) error {
	var e *oci.Error
	if errors.As(err, &e) {
		return e
	}
	return oci.ErrUnavailable.With("blob transfer from upstream failed; nothing was stored", err)
}
