package proxy

import (
	"sync"
	"time"
)

// memo is a small bounded in-memory map with per-entry age. It saves store
// round trips on the hot path; everything in it can be rebuilt from the
// store, so when it is full it is simply emptied.
type memo[K comparable, V any] struct {
	mu  sync.Mutex
	max int
	m   map[K]memoEntry[V]
}

type memoEntry[V any] struct {
	v  V
	at time.Time
}

func newMemo[K comparable, V any](max int) *memo[K, V] {
	return &memo[K, V]{max: max, m: make(map[K]memoEntry[V])}
}

// get returns the value stored for k if it is younger than maxAge.
func (c *memo[K, V]) get(k K, now time.Time, maxAge time.Duration) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || now.Sub(e.at) >= maxAge {
		var zero V
		return zero, false
	}
	return e.v, true
}

func (c *memo[K, V]) put(k K, v V, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[k] = memoEntry[V]{v: v, at: at}
}

func (c *memo[K, V]) del(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, k)
}
