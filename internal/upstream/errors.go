package upstream

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// StatusError is an upstream answer other than the one asked for: the
// registry's own status, with the pause it asked for, if any. Which
// statuses mean what to the mirror (a 404 "unknown", a 401/403 after the
// token flow "denied") is the caller's to decide.
type StatusError struct {
	Status int
	// RetryAfter is the upstream's Retry-After (RFC 9110 section 10.2.3)
	// on a 429 or 503, by the client's clock; zero if it gave none.
	RetryAfter time.Duration
}

func (e *StatusError) Error() string { return fmt.Sprintf("upstream answered %d", e.Status) }

// Sentinel errors of the client, matched with errors.Is.
var (
	// ErrBackingOff: the upstream host asked for a pause (429, or 503
	// with Retry-After) and the request was not sent.
	ErrBackingOff = errors.New("upstream asked the mirror to back off")
	// ErrBadContent: the upstream's bytes do not match the digest asked
	// for (or claimed), or are shorter than announced.
	ErrBadContent = errors.New("upstream sent content that does not match its digest")
	// ErrUnusable: an answer that is not what a registry sends (too
	// large, no media type, unreadable).
	ErrUnusable = errors.New("upstream answer unusable")
)

// StatusOf returns the upstream status carried by err (a *StatusError in
// its chain), or 0.
func StatusOf(err error) int {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status
	}
	return 0
}

// checkStatus is the one place a response becomes the client's error:
// nil for a status in ok, else a *StatusError, the body drained and
// closed.
func (c *Client) checkStatus(resp *http.Response, ok ...int) error {
	for _, s := range ok {
		if resp.StatusCode == s {
			return nil
		}
	}
	drain(resp)
	return &StatusError{Status: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), c.clock())}
}

func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return t.Sub(now)
	}
	return 0
}

func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// readBounded reads all of r if it is at most limit bytes; a longer body is
// an error, found without reading more than limit+1 bytes.
func readBounded(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("body larger than %d bytes", limit)
	}
	return b, nil
}
