package cache

import (
	"sync"
	"time"
)

// Memo is a small bounded in-memory map with per-entry age. It saves store
// round trips on the hot path; everything in it can be rebuilt from the
// store, so when it is full it is simply emptied.
type Memo[K comparable, V any] struct {
	mu  sync.Mutex
	max int
	m   map[K]memoEntry[V]
}

type memoEntry[V any] struct {
	v  V
	at time.Time
}

// NewMemo makes a memo of at most max entries.
func NewMemo[K comparable, V any](max int) *Memo[K, V] {
	return &Memo[K, V]{max: max, m: make(map[K]memoEntry[V])}
}

// Get returns the value stored for k if it is younger than maxAge.
func (c *Memo[K, V]) Get(k K, now time.Time, maxAge time.Duration) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || now.Sub(e.at) >= maxAge {
		var zero V
		return zero, false
	}
	return e.v, true
}

// Put stores v for k as of at; a full memo is emptied first.
func (c *Memo[K, V]) Put(k K, v V, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[k] = memoEntry[V]{v: v, at: at}
}

// Del forgets k.
func (c *Memo[K, V]) Del(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, k)
}
