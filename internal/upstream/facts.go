package upstream

import (
	"math"
	"strings"
	"sync/atomic"
	"time"
)

// Facts is what the mirror has learnt about an upstream by talking to it:
// one value per upstream, read by the serving side and the fill engine
// alike (containerd's HostCapabilities in core/remotes/docker/registry.go,
// but learnt rather than configured). Each process (each Lambda instance)
// learns its own.
type Facts struct {
	// CDN: blob GETs were seen to redirect to another host.
	CDN bool
	// FillRate is the measured fill throughput in bytes per second (see
	// NoteFill); 0 until a fill was measured.
	FillRate float64
	// Headless: the upstream's manifest HEAD was found unusable where a
	// GET worked, less than HeadlessFor ago (see NoteHeadless).
	Headless bool
}

// HeadlessFor is how long an upstream whose manifest HEAD failed (or
// named no digest) where a GET then worked is revalidated with GET only,
// before HEAD is tried again.
const HeadlessFor = 6 * time.Hour

// MinRatedFill is the smallest fill that counts towards the fill rate.
const MinRatedFill = 1 << 20

type hostFacts struct {
	cdn      atomic.Bool
	rate     fillRate
	headless atomic.Int64 // unix nanos of the last NoteHeadless; 0: never
}

// Facts returns what has been learnt so far.
func (c *Client) Facts() Facts {
	at := c.facts.headless.Load()
	return Facts{
		CDN:      c.facts.cdn.Load(),
		FillRate: c.facts.rate.get(),
		Headless: at != 0 && c.clock().Sub(time.Unix(0, at)) < HeadlessFor,
	}
}

// NoteFill records a fill of n bytes that took d, for Facts.FillRate.
func (c *Client) NoteFill(n int64, d time.Duration) { c.facts.rate.note(n, d) }

// NoteHeadless records that the upstream's manifest HEAD is not to be
// trusted, for HeadlessFor. It reports whether that is news.
func (c *Client) NoteHeadless() bool {
	news := !c.Facts().Headless
	c.facts.headless.Store(c.clock().UnixNano())
	return news
}

// fillRate is an exponentially weighted average over fills big enough for
// the transfer, not the round trips, to dominate.
type fillRate struct{ bits atomic.Uint64 }

func (r *fillRate) note(n int64, d time.Duration) {
	if n < MinRatedFill || d <= 0 {
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

func (r *fillRate) get() float64 { return math.Float64frombits(r.bits.Load()) }

// BackingOff reports whether the upstream's own host asked for a pause
// (429, or 503 with Retry-After) that has not passed.
func (c *Client) BackingOff() bool {
	return c.backoff.active(strings.ToLower(c.base.Host), c.clock())
}

// Failing reports whether the upstream's own host is remembered as failing
// (it hung or refused connections, outage.go): requests to it fail fast
// until a probe gets an answer.
func (c *Client) Failing() bool {
	c.outages.mu.Lock()
	defer c.outages.mu.Unlock()
	return c.outages.hosts[strings.ToLower(c.base.Host)] != nil
}
