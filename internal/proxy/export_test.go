package proxy

import "time"

// SetClock replaces the proxy's clock (the cache's: tag and referrers
// expiry, memos, use records, back-off, request logs), so tests expire
// tags without sleeping. Call it before serving requests.
func (p *Proxy) SetClock(now func() time.Time) { p.cache.now = now }

// SetUpstreamClock replaces the clock the proxy's upstreams judge their
// bearer tokens' expiry by (auth.go). Call it before serving requests.
func (p *Proxy) SetUpstreamClock(now func() time.Time) {
	for _, u := range p.upstreams {
		u.now = now
	}
}
