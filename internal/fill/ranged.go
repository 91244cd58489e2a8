package fill

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/pullthrough/pullthrough/internal/upstream"
)

// Defaults for parallel ranged fills (Config.FillParts, Config.FillPartSize).
// CDNs cap each connection's rate, so a big blob fetched as several ranges
// at once arrives faster than one stream. Memory per fill stays at most
// FillParts × FillPartSize (32 MiB). Of the parts, the one being read is
// not in flight: against an upstream capping each connection, more and
// smaller parts in the same memory win (make bench, 1 GiB at 32 MiB/s a
// connection: 4 × 8 MiB 2.8× one stream, 8 × 4 MiB 4.5×).
const (
	DefaultFillParts    = 8
	DefaultFillPartSize = 4 << 20
)

// rangedFill reads a blob in order while up to parts-1 ranged GETs fetch
// the parts after the one being read. Part 0 comes from the fill's plain
// GET, which is closed once it has been read; whether the upstream honours
// Range is learnt from the first ranged GET (206 with a matching
// Content-Range, RFC 9110 §14.4 and §15.3.7): if it answers 200 with the
// whole body instead, the fill falls back to the plain GET, which it has
// not closed yet. Every part's length is checked here; the digest is
// checked by the caller over the bytes in order, so a part with wrong
// bytes fails the whole fill.
type rangedFill struct {
	ctx    context.Context
	cancel context.CancelFunc
	fetch  func(ctx context.Context, off, n int64) (*upstream.Blob, error)
	// resume reads bytes [off, end) from part, resuming it when it breaks
	// (resume.go).
	resume   func(ctx context.Context, part *upstream.Blob, off, end int64) io.ReadCloser
	size     int64
	partSize int64
	parts    int // at most this many parts are buffered or in flight

	plain      io.Reader // the plain GET's body: part 0, or everything on fallback
	closePlain func()
	cur        io.Reader // the part being read
	index      int       // the part cur reads
	probed     bool      // the first ranged GET answered 206
	fell       bool      // fell back to the plain GET
	queue      []*rangePart
	next       int // the next part to start
	wg         sync.WaitGroup
	// free holds part buffers read to the end, for the next parts: a fill
	// allocates at most parts buffers, however big the blob (no garbage
	// for the collector to let pile up).
	free [][]byte
	held []byte // the buffer cur reads
}

type rangePart struct {
	done chan struct{}
	buf  []byte
	full bool // the upstream ignored Range and sent the whole blob: fall back
	err  error
}

// newRangedFill reads the blob of size bytes whose plain GET body is
// plain, fetching parts after the first with fetch.
func newRangedFill(ctx context.Context, plain io.Reader, closePlain func(), size, partSize int64, parts int, fetch func(context.Context, int64, int64) (*upstream.Blob, error)) *rangedFill {
	ctx, cancel := context.WithCancel(ctx)
	r := &rangedFill{ctx: ctx, cancel: cancel, fetch: fetch, size: size, partSize: partSize, parts: parts, plain: plain, closePlain: closePlain, next: 1}
	r.cur = io.LimitReader(plain, partSize)
	return r
}

func (r *rangedFill) count() int { return int((r.size + r.partSize - 1) / r.partSize) }

// start launches part fetches until parts-1 are queued (the part being
// read is the parts-th buffer).
func (r *rangedFill) start() {
	limit := r.parts - 1
	if !r.probed {
		limit = 1 // learn whether Range is honoured before fanning out
	}
	for len(r.queue) < limit && r.next < r.count() {
		off := int64(r.next) * r.partSize
		n := min(r.partSize, r.size-off)
		p := &rangePart{done: make(chan struct{})}
		if k := len(r.free); k > 0 {
			p.buf, r.free = r.free[k-1], r.free[:k-1]
		} else {
			p.buf = make([]byte, r.partSize)
		}
		r.queue = append(r.queue, p)
		r.next++
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer close(p.done)
			p.buf, p.full, p.err = r.get(off, p.buf[:n])
		}()
	}
}

// get fetches bytes [off, off+len(buf)) of the blob into buf, trying a
// part that fails again on its own (partAttempts in all, with back-off)
// before the fill gives up. full reports an upstream that answered 200
// (Range ignored).
func (r *rangedFill) get(off int64, buf []byte) (_ []byte, full bool, err error) {
	backoff := resumeBackoff
	for attempt := 1; ; attempt++ {
		buf, full, err = r.getOnce(off, buf)
		if err == nil || attempt == partAttempts || r.ctx.Err() != nil {
			return buf, full, err
		}
		select {
		case <-r.ctx.Done():
			return buf, full, err
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

// partAttempts bounds the tries at one ranged part.
const partAttempts = 3

func (r *rangedFill) getOnce(off int64, buf []byte) (_ []byte, full bool, err error) {
	n := int64(len(buf))
	part, err := r.fetch(r.ctx, off, n)
	if err != nil {
		return buf, false, fmt.Errorf("ranged GET of bytes %d-%d: %w", off, off+n-1, err)
	}
	if !part.Partial {
		part.Close()
		return buf, true, nil
	}
	if want := fmt.Sprintf("bytes %d-%d/%d", off, off+n-1, r.size); part.ContentRange != want {
		part.Close()
		return buf, false, fmt.Errorf("ranged GET: got Content-Range %q, want %q", part.ContentRange, want)
	}
	body := r.resume(r.ctx, part, off, off+n) // a part whose body stalls is cut like the plain GET's, and resumed
	defer body.Close()
	if _, err := io.ReadFull(body, buf); err != nil {
		return buf, false, fmt.Errorf("ranged GET of bytes %d-%d: %w", off, off+n-1, err)
	}
	return buf, false, nil
}

func (r *rangedFill) Read(b []byte) (int, error) {
	for {
		if r.fell {
			return r.plain.Read(b)
		}
		if r.index == 0 && len(r.queue) == 0 {
			r.start() // first Read: probe while part 0 streams
		}
		n, err := r.cur.Read(b)
		if n > 0 || (err != nil && err != io.EOF) {
			return n, err
		}
		if err == nil {
			continue
		}
		if len(r.queue) == 0 {
			return 0, io.EOF
		}
		p := r.queue[0]
		select {
		case <-p.done:
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
		if p.err != nil {
			return 0, p.err
		}
		if p.full && r.probed {
			return 0, fmt.Errorf("ranged GET of part %d: upstream answered 200 after honouring Range", r.index+1)
		}
		if p.full {
			// Range ignored: the plain GET, still open, carries the rest.
			r.fell = true
			r.stop()
			continue
		}
		if r.index == 0 {
			r.probed = true
			r.closePlain() // its part is read; ranges carry the rest
		}
		r.queue = r.queue[1:]
		r.index++
		if r.held != nil {
			// Read to the end: its bytes were copied on before this Read.
			r.free = append(r.free, r.held[:cap(r.held)])
		}
		r.held = p.buf
		r.cur = bytes.NewReader(p.buf)
		r.start()
	}
}

// stop cancels the ranged GETs in flight and waits for them.
func (r *rangedFill) stop() {
	r.cancel()
	r.wg.Wait()
	r.queue = nil
}
