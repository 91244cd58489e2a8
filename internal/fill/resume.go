package fill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/pullthrough/pullthrough/internal/upstream"
)

// Resumed transfers. Middleboxes cut long transfers (harbor #23600 and PR
// #23601, containerd PR #5921), and a client pulling directly resumes with
// Range where the mirror, with one GET per fill, could never cache the
// blob. A fill's upstream body that ends short of its announced length, or
// fails, is resumed with a ranged GET from the last byte read (RFC 9110
// section 14.2); an upstream that ignores Range is asked again from the
// start and the bytes already read are skipped. The digest is checked by
// the caller over the whole, so a resumed transfer is verified like any
// other.
const (
	// maxStalls bounds the resumes in a row that bring no byte.
	maxStalls = 3
	// maxResumes bounds the resumes of one transfer in all.
	maxResumes = 64
	// resumeBackoff is the first pause before a resume without progress;
	// it doubles with each further one.
	resumeBackoff = 200 * time.Millisecond
)

// resumingBody reads a blob from an upstream body, resuming it when it
// breaks. It is not safe for concurrent use.
type resumingBody struct {
	ctx    context.Context
	b      Blob
	log    *slog.Logger
	cur    *upstream.Blob
	size   int64 // the blob's size, announced by the first answer; -1 if unknown
	end    int64 // where this body ends: size for a whole blob, a part's end; -1 if unknown
	off    int64 // the offset in the blob of the next byte
	broken error // why cur can be read no further; nil while it can
	stalls int   // resumes in a row that brought no byte
	total  int   // resumes in all
	gained bool  // a byte came since the last resume
}

// newResumingBody reads a whole blob from src, its first answer.
func newResumingBody(ctx context.Context, b Blob, src *upstream.Blob, log *slog.Logger) *resumingBody {
	return &resumingBody{ctx: ctx, b: b, log: log, cur: src, size: src.Size, end: src.Size}
}

// newResumingPart reads bytes [off, end) of a blob of size bytes from
// part, a ranged answer for them.
func newResumingPart(ctx context.Context, b Blob, part *upstream.Blob, off, end, size int64, log *slog.Logger) *resumingBody {
	return &resumingBody{ctx: ctx, b: b, log: log, cur: part, size: size, end: end, off: off}
}

func (r *resumingBody) Read(p []byte) (int, error) {
	for {
		if r.broken != nil {
			if err := r.resume(); err != nil {
				return 0, err
			}
		}
		if r.end >= 0 && int64(len(p)) > r.end-r.off {
			p = p[:max(r.end-r.off, 0)]
			if len(p) == 0 {
				return 0, io.EOF
			}
		}
		n, err := r.cur.Read(p)
		r.off += int64(n)
		if n > 0 {
			r.gained = true
		}
		switch {
		case err == nil:
			return n, nil
		case err == io.EOF && (r.end < 0 || r.off >= r.end):
			return n, io.EOF // the length check is the caller's
		case err == io.EOF:
			err = fmt.Errorf("body ended at byte %d of %d: %w", r.off, r.end, io.ErrUnexpectedEOF)
		}
		r.broken = err
		if n > 0 {
			return n, nil
		}
	}
}

// resume replaces the broken body with one from r.off, within the bounds.
func (r *resumingBody) resume() error {
	for {
		cause := r.broken
		if r.ctx.Err() != nil {
			return cause // the fill's own deadline: no resume
		}
		if r.gained {
			r.stalls = 0
		} else {
			r.stalls++
		}
		r.gained = false
		if r.stalls >= maxStalls || r.total >= maxResumes {
			return fmt.Errorf("upstream transfer failed after %d resumes: %w", r.total, cause)
		}
		r.total++
		if r.stalls > 0 {
			select {
			case <-r.ctx.Done():
				return cause
			case <-time.After(resumeBackoff << (r.stalls - 1)):
			}
		}
		r.cur.Close()
		r.log.Info("fill resumed", "digest", r.b.Digest.String(), "offset", r.off, "resume", r.total, "cause", cause.Error())
		next, err := r.open()
		if err == nil {
			r.cur, r.broken = next, nil
			return nil
		}
		r.broken = err
	}
}

// open asks for the blob from r.off: a ranged GET that must answer for
// exactly that offset, or, where Range is ignored, the whole blob again
// with the bytes already read skipped.
func (r *resumingBody) open() (*upstream.Blob, error) {
	var next *upstream.Blob
	var err error
	if r.end >= 0 {
		next, err = r.b.Up.GetBlobRange(r.ctx, r.b.Name, r.b.Digest, r.off, r.end-r.off)
	} else {
		next, err = r.b.Up.GetBlobFrom(r.ctx, r.b.Name, r.b.Digest, r.off)
	}
	if err != nil {
		return nil, err
	}
	if next.Partial {
		want := fmt.Sprintf("bytes %d-", r.off)
		if !strings.HasPrefix(next.ContentRange, want) || r.size >= 0 && !strings.HasSuffix(next.ContentRange, fmt.Sprintf("/%d", r.size)) {
			next.Close()
			return nil, fmt.Errorf("resume: got Content-Range %q, want %s…/%d", next.ContentRange, want, r.size)
		}
		return next, nil
	}
	if r.size >= 0 && next.Size >= 0 && next.Size != r.size {
		next.Close()
		return nil, fmt.Errorf("resume: the upstream now announces %d bytes, first %d", next.Size, r.size)
	}
	if _, err := io.CopyN(io.Discard, next, r.off); err != nil {
		next.Close()
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("resume without Range: skipping %d bytes: %w", r.off, err)
	}
	return next, nil
}

// Close ends the transfer in progress.
func (r *resumingBody) Close() error { return r.cur.Close() }
