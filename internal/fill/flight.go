package fill

import (
	"context"
	"sync"
	"time"

	"github.com/pullthrough/pullthrough/internal/oci"
)

// Group runs one call per key at a time; later callers wait for the
// first one's result or for their own context to end. Keys must name
// everything the result depends on: a blob fill's result depends on the
// upstream and repository as well as the digest (a 404 from one registry
// says nothing of another's copy).
type Group[T any] struct {
	mu    sync.Mutex
	calls map[string]*flight[T]
}

type flight[T any] struct {
	done chan struct{}
	val  T
	err  error
}

// Do runs fn once per key. With async, fn runs in its own goroutine and
// every caller waits at most wait for it (the call carries on; a caller
// that gives up gets ErrPending); otherwise the first caller runs it and
// later callers wait for its result.
func (g *Group[T]) Do(ctx context.Context, key string, async bool, wait time.Duration, fn func() (T, error)) (T, error) {
	g.mu.Lock()
	if g.calls == nil {
		g.calls = map[string]*flight[T]{}
	}
	f, running := g.calls[key]
	if !running {
		f = &flight[T]{done: make(chan struct{})}
		g.calls[key] = f
	}
	g.mu.Unlock()

	if !running {
		run := func() {
			defer func() {
				g.mu.Lock()
				if g.calls[key] == f {
					delete(g.calls, key)
				}
				g.mu.Unlock()
				close(f.done)
			}()
			f.val, f.err = fn()
		}
		if !async {
			run()
			return f.val, f.err
		}
		go run()
	}
	var timeout <-chan time.Time
	if async {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	var zero T
	select {
	case <-f.done:
		return f.val, f.err
	case <-timeout:
		return zero, errFillPending()
	case <-ctx.Done():
		return zero, oci.ErrUnavailable.With("request ended while waiting for a fill", ctx.Err())
	}
}

// Forget makes the next Do for key start a new call, even while the
// current one (whose callers still get its result) is finishing: a fill
// that failed lets a client that heard of the failure retry at once.
func (g *Group[T]) Forget(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.calls, key)
}
