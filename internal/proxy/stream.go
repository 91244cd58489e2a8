package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/pullthrough/pullthrough/internal/fill"
	"github.com/pullthrough/pullthrough/internal/oci"
)

// joinStream answers a blob GET or HEAD from a fill of it in progress in
// this process, if there is one (fill.Engine.Join), for any repository of
// the upstream whose link to the blob is confirmed: a GET streams it, a
// ranged GET gets its range as soon as those bytes are in (containerd
// 2.1+ sends Range on every layer GET, and with
// concurrent_layer_fetch_buffer several ranges of one layer at once:
// containerd #11953, PR #11998); a HEAD gets the length the upstream
// announced. None announced: the request is answered as without a fill. It
// is asked before the store. joined reports that it answered (err is then
// the answer's).
func (p *Proxy) joinStream(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route) (joined bool, err error) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false, nil
	}
	st := p.fills.Join(fillBlob(rt))
	if st == nil {
		return false, nil
	}
	if st.Size() < 0 && (r.Method == http.MethodHead || r.Header.Get("Range") != "") {
		st.Close()
		return false, nil
	}
	if st.For() != rt.name {
		if err := p.checkLinkedBlob(ctx, rt); err != nil {
			st.Close()
			return true, err
		}
	}
	if r.Method == http.MethodHead {
		defer st.Close()
		blobHeaders(w.Header(), rt.digest, st.Size(), cacheMiss)
		w.WriteHeader(http.StatusOK)
		return true, nil
	}
	return p.sendStream(ctx, w, r, rt, st)
}

// sendStream answers a GET from a fill's stream and closes it: the whole
// blob, or the one range a Range header asks for (206). handled is false,
// the stream closed and nothing written, for a Range the stream cannot
// answer (several ranges, a blob of unknown size): the caller answers from
// the store once the fill is done.
func (p *Proxy) sendStream(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route, st *fill.Stream) (handled bool, err error) {
	h := r.Header.Get("Range")
	if h == "" {
		_, err := p.copyStream(ctx, w, rt, st, byteRange{0, st.Size()}, http.StatusOK)
		return true, err
	}
	rng, ok, unsatisfiable := parseByteRange(h, st.Size())
	switch {
	case !ok:
		st.Close()
		return false, nil
	case unsatisfiable:
		st.Close()
		w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(st.Size(), 10))
		return true, oci.ErrRangeInvalid
	}
	w.Header().Set("Content-Range", "bytes "+strconv.FormatInt(rng.off, 10)+"-"+strconv.FormatInt(rng.off+rng.n-1, 10)+"/"+strconv.FormatInt(st.Size(), 10))
	_, err = p.copyStream(ctx, w, rt, st, rng, http.StatusPartialContent)
	return true, err
}

// copyStream writes rng of a fill's stream (rng.n -1: to the end, length
// unknown) with status and closes the stream. A fill that fails before the
// first byte is sent gets its own error answer; one that fails later cuts
// the transfer (the client sees a short body, never a complete wrong one:
// the stream holds the blob's last byte back until the bytes are
// verified). A client that hangs up ends only its own stream. It returns
// the bytes sent if all of rng was (else -1), and an error only when
// nothing was written.
func (p *Proxy) copyStream(ctx context.Context, w http.ResponseWriter, rt route, st *fill.Stream, rng byteRange, status int) (sent int64, err error) {
	defer st.Close()
	r := st.Reader(ctx, rng.off)
	if rng.n >= 0 {
		r = io.LimitReader(r, rng.n)
	}
	buf := make([]byte, 64<<10)
	n, err := r.Read(buf)
	if n == 0 && err != nil && err != io.EOF {
		w.Header().Del("Content-Range")
		return -1, fillError(err)
	}
	h := w.Header()
	blobHeaders(h, rt.digest, rng.n, cacheMiss)
	if rng.n < 0 {
		h.Del("Content-Length")
	}
	w.WriteHeader(status)
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
