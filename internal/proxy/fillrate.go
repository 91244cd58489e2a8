package proxy

import (
	"math"
	"sync/atomic"
	"time"
)

// fillRate is an upstream's measured fill throughput in bytes per second:
// an exponentially weighted average over fills big enough for the
// transfer, not the round trips, to dominate. PolicyAuto weighs it against
// a blob's size (redirectPays). Each process (each Lambda instance)
// measures its own.
type fillRate struct{ bits atomic.Uint64 }

// minRatedFill is the smallest fill that counts towards the rate.
const minRatedFill = 1 << 20

// note records a fill of n bytes that took d.
func (r *fillRate) note(n int64, d time.Duration) {
	if n < minRatedFill || d <= 0 {
		return
	}
	sample := float64(n) / d.Seconds()
	for {
		old := r.bits.Load()
		next := sample
		if prev := math.Float64frombits(old); prev > 0 {
			next = (prev + sample) / 2
		}
		if r.bits.CompareAndSwap(old, math.Float64bits(next)) {
			return
		}
	}
}

// get returns the rate in bytes per second, 0 if none was measured.
func (r *fillRate) get() float64 { return math.Float64frombits(r.bits.Load()) }
