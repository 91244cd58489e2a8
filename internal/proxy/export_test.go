package proxy

import "time"

// SetClock replaces the proxy's clock (the cache's: tag and referrers
// expiry, memos, use records, back-off, request logs), so tests expire
// tags without sleeping. Call it before serving requests.
func (p *Proxy) SetClock(now func() time.Time) { p.cache.now = now }

// SetClock replaces the clock an upstream judges its bearer tokens'
// expiry by. Call it before the upstream is used.
func (u *Upstream) SetClock(now func() time.Time) { u.now = now }
