package proxy

import "time"

// SetClock replaces the proxy's clock, so tests expire tags without
// sleeping. Call it before serving requests.
func (p *Proxy) SetClock(now func() time.Time) { p.cache.now = now }
