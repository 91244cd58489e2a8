package oci

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestTableErrors(t *testing.T) {
	for _, tc := range []struct {
		name       string
		err        error
		is, isNot  *Error
		status     int
		retryAfter string
		challenge  string
	}{
		{name: "wrapped catalogue entry", err: fmt.Errorf("fill: %w", ErrBlobUnknown.With("gone", nil)), is: ErrBlobUnknown, isNot: ErrManifestUnknown, status: 404},
		{name: "bad bytes is not plain unavailable", err: ErrUpstreamBadBytes.With("", nil), is: ErrUpstreamBadBytes, isNot: ErrUnavailable, status: 502},
		{name: "unavailable is not bad bytes", err: ErrUnavailable.With("x", nil), is: ErrUnavailable, isNot: ErrUpstreamBadBytes, status: 503},
		{name: "retry after rounds up to whole seconds", err: ErrUnavailable.With("busy", nil).After(1500 * time.Millisecond), is: ErrUnavailable, isNot: ErrTooManyRequests, status: 503, retryAfter: "2"},
		{name: "retry after survives With", err: ErrTooManyRequests.After(5*time.Second).With("slow down", nil), is: ErrTooManyRequests, isNot: ErrUnavailable, status: 429, retryAfter: "5"},
		{name: "unauthorized carries its challenge", err: ErrUnauthorized, is: ErrUnauthorized, isNot: ErrDenied, status: 401, challenge: `Basic realm="pullthrough"`},
		{name: "unknown errors are a generic 500", err: errors.New("boom"), is: ErrUnknown, isNot: ErrUnavailable, status: 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := From(tc.err)
			if !errors.Is(e, tc.is) || errors.Is(e, tc.isNot) {
				t.Errorf("errors.Is(%v): got is %s %v, is %s %v; want true, false", e, tc.is.Code, errors.Is(e, tc.is), tc.isNot.Code, errors.Is(e, tc.isNot))
			}
			w := httptest.NewRecorder()
			Write(w, httptest.NewRequest(http.MethodGet, "/v2/", nil), e)
			if w.Code != tc.status {
				t.Errorf("status: got %d, want %d", w.Code, tc.status)
			}
			if got := w.Header().Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After: got %q, want %q", got, tc.retryAfter)
			}
			if got := w.Header().Get("WWW-Authenticate"); got != tc.challenge {
				t.Errorf("WWW-Authenticate: got %q, want %q", got, tc.challenge)
			}
		})
	}
}
