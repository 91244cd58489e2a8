package fill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// spool holds the bytes of a fill in progress in an unlinked temporary
// file, so that clients can stream a cold blob while it is filled: memory
// stays flat whatever the blob's size and however slow the readers. Any
// number of readers follow the fill at their own pace: the clients, and
// the store's upload (copyBlob), so that a client is not held to the
// store's write speed. The last byte is held back from every reader until
// the fill has checked the digest and length (the verdict): a client is
// never handed a complete body with wrong bytes (its transfer is cut
// instead), and the upload never gets the bytes it would need to publish
// an unverified blob.
type spool struct {
	f    *os.File
	size int64  // announced by the upstream; -1 if unknown
	name string // the repository the fill runs for

	mu       sync.Mutex
	written  int64
	done     bool          // the readers' verdict is in
	err      error         // why the fill (or the spool) failed, once done
	finished bool          // the fill let go of its reference
	changed  chan struct{} // closed and replaced on every change
	refs     int           // the fill's and each reader's
}

// newSpool creates a spool for a blob of size bytes (-1: unknown) in dir
// ("" for the system's temporary directory). The caller holds one
// reference and must call finish.
func newSpool(dir string, size int64) (*spool, error) {
	f, err := os.CreateTemp(dir, "pullthrough-fill-*")
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	// Unlinked at once: nothing is left behind if the process dies.
	os.Remove(f.Name())
	return &spool{f: f, size: size, changed: make(chan struct{}), refs: 1}, nil
}

// Write appends to the spool (the fill's side). A spool that cannot be
// written (disk full) fails its readers and the fill: the store's upload
// is one of its readers.
func (s *spool) Write(b []byte) (int, error) {
	s.mu.Lock()
	done, err := s.done, s.err
	s.mu.Unlock()
	if done {
		if err == nil {
			err = errors.New("spool: write after the verdict")
		}
		return 0, err
	}
	n, err := s.f.WriteAt(b, s.written)
	s.mu.Lock()
	s.written += int64(n)
	if err != nil {
		err = fmt.Errorf("spool: %w", err)
		s.done, s.err = true, err
	}
	s.notify()
	s.mu.Unlock()
	return n, err
}

// notify wakes the readers; s.mu is held.
func (s *spool) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// verdict ends the bytes: err nil releases the held-back byte (they are
// all in and verified), else readers fail with err. Only the first
// verdict counts.
func (s *spool) verdict(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.done {
		s.done, s.err = true, err
		s.notify()
	}
}

// finish ends the fill's side: the verdict err unless one was given, and
// the fill's reference dropped; calls after the first do nothing.
func (s *spool) finish(err error) {
	s.verdict(err)
	s.mu.Lock()
	if s.finished {
		s.mu.Unlock()
		return
	}
	s.finished = true
	s.mu.Unlock()
	s.release()
}

// join takes a reader's reference; false once the spool is closed.
func (s *spool) join() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refs == 0 {
		return false
	}
	s.refs++
	return true
}

func (s *spool) release() {
	s.mu.Lock()
	s.refs--
	last := s.refs == 0
	s.mu.Unlock()
	if last {
		s.f.Close()
	}
}

// errSpoolEarly is the stream's end for a fill that failed.
var errSpoolEarly = errors.New("spool: fill failed")

// reader reads the spool from offset off; it blocks for bytes not yet
// filled until ctx ends. The caller has joined and must release.
func (s *spool) reader(ctx context.Context, off int64) io.Reader {
	return &spoolReader{ctx: ctx, s: s, off: off}
}

type spoolReader struct {
	ctx context.Context
	s   *spool
	off int64
}

func (r *spoolReader) Read(b []byte) (int, error) {
	for {
		r.s.mu.Lock()
		avail, done, err, changed := r.s.written, r.s.done, r.s.err, r.s.changed
		r.s.mu.Unlock()
		if done && err != nil {
			return 0, fmt.Errorf("%w: %w", errSpoolEarly, err)
		}
		if !done {
			avail-- // the last byte waits for the verdict
		}
		if r.off < avail {
			n, err := r.s.f.ReadAt(b[:min(int64(len(b)), avail-r.off)], r.off)
			r.off += int64(n)
			if err == io.EOF && n > 0 {
				err = nil
			}
			return n, err
		}
		if done {
			return 0, io.EOF
		}
		select {
		case <-changed:
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
}

// spools are the spools of the fills in progress in this process, by
// fillKey, for requests that join a fill.
type spools struct {
	mu      sync.Mutex
	m       map[string]*spool
	changed chan struct{}
}

func (ss *spools) put(key string, s *spool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.m == nil {
		ss.m = map[string]*spool{}
	}
	ss.m[key] = s
	ss.wake()
}

func (ss *spools) remove(key string, s *spool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.m[key] == s {
		delete(ss.m, key)
	}
}

// wake tells waiters the set changed; ss.mu is held.
func (ss *spools) wake() {
	if ss.changed != nil {
		close(ss.changed)
	}
	ss.changed = make(chan struct{})
}

// join returns the spool of key's fill, joined, or nil and a channel
// closed when a spool is next put.
func (ss *spools) join(key string) (*spool, <-chan struct{}) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s := ss.m[key]; s != nil && s.join() {
		return s, nil
	}
	if ss.changed == nil {
		ss.changed = make(chan struct{})
	}
	return nil, ss.changed
}
