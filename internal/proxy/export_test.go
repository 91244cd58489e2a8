package proxy

import "time"

// SetClock replaces the proxy's clock (the cache's: tag and referrers
// expiry, memos, use records; and its upstreams': back-off and what they
// learnt), so tests expire tags without sleeping. Call it before serving
// requests.
func (p *Proxy) SetClock(now func() time.Time) {
	p.cache.SetClock(now)
	for _, u := range p.upstreams {
		u.SetClock(now)
	}
}

// SetUpstreamClock replaces the clock the proxy's upstreams judge their
// bearer tokens' expiry by (package upstream, auth.go). Call it before
// serving requests.
func (p *Proxy) SetUpstreamClock(now func() time.Time) {
	for _, u := range p.upstreams {
		u.SetTokenClock(now)
	}
}

// WaitFills waits, for at most d, until no fill runs in the proxy, and
// reports whether none does: a streamed fill publishes after its clients
// got the last byte, and a test must not remove the store under it.
func (p *Proxy) WaitFills(d time.Duration) bool {
	for deadline := time.Now().Add(d); p.fills.Busy() > 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}
