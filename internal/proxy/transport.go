package proxy

import (
	"math/rand/v2"
	"net/http"
	"time"
)

// retryTransport retries one hop of an idempotent request (the mirror only
// sends GET and HEAD, without bodies): connection failures and 502/503/504
// without Retry-After, at most three attempts in all, with jittered
// back-off from 200 ms. 429, and a 503 with Retry-After, are not retried:
// they are honoured instead (see Upstream.noteFailure).
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
		transient := err != nil && ctx.Err() == nil
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

// statsTransport notes the outcome of every attempt in the request's
// statistics (upstream errors, throttling, the rate-limit headers).
type statsTransport struct{ next http.RoundTripper }

func (t statsTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	statsFrom(req.Context()).noteUpstream(resp, err)
	return resp, err
}
