package upstream

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
)

// retryTransport retries one hop of an idempotent request (the mirror only
// sends GET and HEAD, without bodies): connection failures and 502/503/504
// without Retry-After, at most three attempts in all, with jittered
// back-off from 200 ms. 429, and a 503 with Retry-After, are not retried:
// they are honoured instead (backoffTransport). Nor is a timeout: the host
// hangs, and asking again would cost another (outage.go).
type retryTransport struct{ next http.RoundTripper }

func (t retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead || req.Body != nil && req.Body != http.NoBody {
		return t.next.RoundTrip(req)
	}
	ctx := req.Context()
	const attempts = 3
	backoff := 200 * time.Millisecond
	for i := 1; ; i++ {
		resp, err := t.next.RoundTrip(req)
		transient := err != nil && ctx.Err() == nil && !errors.Is(err, ErrForbiddenAddress) && !isTimeout(err)
		if err == nil {
			switch resp.StatusCode {
			case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
				transient = resp.Header.Get("Retry-After") == ""
			}
		}
		if !transient || i == attempts {
			return resp, err
		}
		if resp != nil {
			drain(resp)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff/2 + rand.N(backoff)):
		}
		backoff *= 2
	}
}

// observeTransport tells the client's observer of every attempt.
type observeTransport struct {
	c    *Client
	next http.RoundTripper
}

func (t observeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if fn := t.c.observe.Load(); fn != nil {
		(*fn)(req.Context(), resp, err)
	}
	return resp, err
}

// maxBackoff caps a pause an upstream asks for.
const maxBackoff = 10 * time.Minute

// backoff remembers, per host, an upstream's Retry-After on a 429 or 503
// until it has passed, so that the mirror stops asking and serves from
// cache instead (regclient's per-host back-off in internal/reghttp).
type backoff struct {
	mu    sync.Mutex
	until map[string]time.Time // by lower-case host
}

func (b *backoff) active(host string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return now.Before(b.until[host])
}

func (b *backoff) note(host string, d time.Duration, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.until == nil {
		b.until = map[string]time.Time{}
	}
	if len(b.until) >= 256 {
		clear(b.until)
	}
	b.until[host] = now.Add(min(d, maxBackoff))
}

// backoffTransport refuses, with ErrBackingOff and without sending it, a
// request to a host that asked for a pause, and learns such pauses from
// answers: callers never check.
type backoffTransport struct {
	c    *Client
	next http.RoundTripper
}

func (t *backoffTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	host := strings.ToLower(req.URL.Host)
	if t.c.backoff.active(host, t.c.clock()) {
		return nil, ErrBackingOff
	}
	resp, err := t.next.RoundTrip(req)
	if err == nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if d := retryAfter(resp.Header.Get("Retry-After"), t.c.clock()); d > 0 {
			t.c.backoff.note(host, d, t.c.clock())
		}
	}
	return resp, err
}
