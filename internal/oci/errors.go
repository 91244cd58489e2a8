// Package oci is the vocabulary both sides of the mirror share: the one OCI
// error type with its catalogue and renderer (distribution spec, "Error
// Codes"), the manifest media types Docker defines beside image-spec's, and
// the reading of manifests (their digests, schema 1's included, and what
// they reference). It holds no policy and does no I/O.
package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Error is the one OCI error type (distribution spec, "Error Codes").
// Handlers return it (possibly wrapped) and Write renders it as
// {"errors":[{"code":...,"message":...}]} with its own headers.
type Error struct {
	Code    string // OCI error code, e.g. BLOB_UNKNOWN
	Status  int    // HTTP status
	Message string // safe to show to clients
	Detail  any    // optional, safe to show to clients
	Err     error  // cause, logged only
	// RetryAfter, when positive, is sent as Retry-After (whole seconds,
	// rounded up; RFC 9110 section 10.2.3).
	RetryAfter time.Duration
	// Challenge, when set, is sent as WWW-Authenticate (RFC 9110 section
	// 11.6.1); a 401 needs one.
	Challenge string

	kind *Error // the catalogue entry this error was made from
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches errors made from the same catalogue entry, so
// errors.Is(err, ErrBlobUnknown) works for any message or cause, and two
// entries sharing a code (ErrUpstreamBadBytes and ErrUnavailable) stay
// apart.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.origin() == e.origin()
}

func (e *Error) origin() *Error {
	if e.kind != nil {
		return e.kind
	}
	return e
}

// With returns a copy of e with a client-facing message and a logged cause.
func (e *Error) With(msg string, cause error) *Error {
	c := *e
	c.kind = e.origin()
	if msg != "" {
		c.Message = msg
	}
	c.Err = cause
	return &c
}

// After returns a copy of e that asks the client to retry after d.
func (e *Error) After(d time.Duration) *Error {
	c := *e
	c.kind = e.origin()
	c.RetryAfter = d
	return &c
}

// The catalogue. Codes are those of the OCI distribution spec plus the
// registry/2.0 UNAVAILABLE and TOOMANYREQUESTS.
var (
	ErrBlobUnknown         = &Error{Code: "BLOB_UNKNOWN", Status: http.StatusNotFound, Message: "blob unknown to registry"}
	ErrDigestInvalid       = &Error{Code: "DIGEST_INVALID", Status: http.StatusBadRequest, Message: "provided digest did not match uploaded content"}
	ErrManifestUnknown     = &Error{Code: "MANIFEST_UNKNOWN", Status: http.StatusNotFound, Message: "manifest unknown"}
	ErrManifestInvalid     = &Error{Code: "MANIFEST_INVALID", Status: http.StatusBadRequest, Message: "manifest invalid"}
	ErrNameInvalid         = &Error{Code: "NAME_INVALID", Status: http.StatusBadRequest, Message: "invalid repository name"}
	ErrNameUnknown         = &Error{Code: "NAME_UNKNOWN", Status: http.StatusNotFound, Message: "repository name not known to registry"}
	ErrUnsupported         = &Error{Code: "UNSUPPORTED", Status: http.StatusMethodNotAllowed, Message: "the operation is unsupported: this is a read-only mirror"}
	ErrNotFound            = &Error{Code: "NOT_FOUND", Status: http.StatusNotFound, Message: "not found"}
	ErrUnauthorized        = &Error{Code: "UNAUTHORIZED", Status: http.StatusUnauthorized, Message: "authentication required", Challenge: `Basic realm="pullthrough"`}
	ErrDenied              = &Error{Code: "DENIED", Status: http.StatusForbidden, Message: "requested access to the resource is denied"}
	ErrTooManyRequests     = &Error{Code: "TOOMANYREQUESTS", Status: http.StatusTooManyRequests, Message: "too many requests"}
	ErrUnavailable         = &Error{Code: "UNAVAILABLE", Status: http.StatusServiceUnavailable, Message: "service unavailable"}
	ErrPaginationInvalid   = &Error{Code: "PAGINATION_NUMBER_INVALID", Status: http.StatusBadRequest, Message: "invalid pagination parameters"}
	ErrUpstreamBadBytes    = &Error{Code: "UNAVAILABLE", Status: http.StatusBadGateway, Message: "upstream sent content that does not match its digest; nothing was stored"}
	ErrUpstreamNotRegistry = &Error{Code: "UNAVAILABLE", Status: http.StatusBadGateway, Message: "upstream answered with something that is not a registry answer; nothing was stored"}
	ErrQueryInvalid        = &Error{Code: "UNSUPPORTED", Status: http.StatusBadRequest, Message: "invalid request parameters"}
	// ErrRangeInvalid is distribution's RANGE_INVALID (registry/api/v2,
	// ErrorCodeRangeInvalid): a Range that starts past the blob's end.
	ErrRangeInvalid = &Error{Code: "RANGE_INVALID", Status: http.StatusRequestedRangeNotSatisfiable, Message: "requested range not satisfiable"}
	ErrUnknown      = &Error{Code: "UNKNOWN", Status: http.StatusInternalServerError, Message: "internal error"}
)

// From maps any error to the OCI error that is shown to the client: the
// outermost *Error in its chain. Unknown errors become a generic 500 whose
// cause is only logged.
func From(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return ErrUnknown.With("", err)
}

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// Write renders e as {"errors":[{"code":...,"message":...}]} with its
// status, Retry-After and WWW-Authenticate. A HEAD request gets the status
// and headers only.
func Write(w http.ResponseWriter, r *http.Request, e *Error) {
	body, _ := json.Marshal(errorBody{Errors: []errorEntry{{Code: e.Code, Message: e.Message, Detail: e.Detail}}})
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", fmt.Sprint(len(body)))
	h.Del("Docker-Content-Digest")
	h.Del("ETag")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((e.RetryAfter+time.Second-1)/time.Second), 10))
	}
	if e.Challenge != "" {
		h.Set("WWW-Authenticate", e.Challenge)
	}
	w.WriteHeader(e.Status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}
