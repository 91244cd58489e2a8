package upstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// StatusError is an upstream answer other than the one asked for: the
// status, with the pause it asked for, if any, and whether the answer is
// the registry's own. Which statuses mean what to the mirror (404, 410 and
// 451 "gone", a registry's 401/403 after the token flow "denied") is the
// caller's to decide; an answer that is not the registry's (Foreign) is
// ErrNotRegistry whatever its status.
type StatusError struct {
	Status int
	// RetryAfter is the upstream's Retry-After (RFC 9110 section 10.2.3)
	// on a 429 or 503, by the client's clock; zero if it gave none.
	RetryAfter time.Duration
	// Code is the first code of an OCI error body
	// ({"errors":[{"code":"DENIED",...}]}, distribution spec "Error
	// Codes"); "" when the body is not one.
	Code string
	// Page: the answer is a web page (text/html) or a CDN's challenge
	// (cf-mitigated), not a registry's.
	Page bool
}

func (e *StatusError) Error() string {
	switch {
	case e.Page:
		return fmt.Sprintf("upstream answered %d with a web page, not a registry answer", e.Status)
	case e.Foreign():
		return fmt.Sprintf("upstream answered %d without a registry error body", e.Status)
	case e.Code != "":
		return fmt.Sprintf("upstream answered %d %s", e.Status, e.Code)
	}
	return fmt.Sprintf("upstream answered %d", e.Status)
}

// Foreign reports whether the answer is not the registry's own: a web page
// or CDN challenge at any status, or a 401/403 without an OCI error body.
// Registries deny with an OCI error body (Docker Hub, distribution, GHCR,
// Quay, ECR, Harbor all do); a login wall, a captive portal or Docker Hub's
// CDN challenge (403 "Just a moment...", cf-mitigated: challenge; harbor
// #23145, #23025) does not.
func (e *StatusError) Foreign() bool {
	return e.Page || (e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden) && e.Code == ""
}

// Unwrap makes a foreign answer ErrNotRegistry for errors.Is.
func (e *StatusError) Unwrap() error {
	if e.Foreign() {
		return ErrNotRegistry
	}
	return nil
}

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
	// ErrNotRegistry: the answer is not a registry's: a web page, a CDN
	// challenge, a 401/403 without an OCI error body, or a manifest body
	// of a media type no registry serves as a manifest. It is trouble on
	// the way to the registry, not something the registry said.
	ErrNotRegistry = errors.New("upstream answer is not a registry answer")
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
// nil for a status in ok, else a *StatusError, the body read (at most
// maxErrorBody bytes), drained and closed.
func (c *Client) checkStatus(resp *http.Response, ok ...int) error {
	for _, s := range ok {
		if resp.StatusCode == s {
			return nil
		}
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	drain(resp)
	return &StatusError{
		Status: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), c.clock()),
		Code: errorCode(body), Page: isPage(resp.Header, body),
	}
}

// maxErrorBody bounds an error answer's body read to classify it.
const maxErrorBody = 64 << 10

// errorCode is the first code of an OCI error body, whatever the
// Content-Type (registries label it application/json, text/plain or
// nothing), or "".
func errorCode(body []byte) string {
	var eb struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &eb) != nil || len(eb.Errors) == 0 {
		return ""
	}
	return eb.Errors[0].Code
}

// isPage tells a web page or a CDN challenge from a registry answer: an
// HTML Content-Type or body, or Cloudflare's cf-mitigated header
// (developers.cloudflare.com, "Detect a Challenge Page response").
func isPage(h http.Header, body []byte) bool {
	if h.Get("Cf-Mitigated") != "" {
		return true
	}
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	if mt == "text/html" || mt == "application/xhtml+xml" {
		return true
	}
	return looksLikeHTML(body)
}

// looksLikeHTML is the start of an HTML document, as a browser would sniff
// it (WHATWG MIME Sniffing, "identifying a resource with an unknown MIME
// type"): <!doctype html, <html, <head, <body, <script, <title, <iframe.
func looksLikeHTML(body []byte) bool {
	b := bytes.TrimLeft(body, " \t\r\n\f\ufeff")
	for _, tag := range []string{"<!doctype html", "<html", "<head", "<body", "<script", "<title", "<iframe", "<!--"} {
		if len(b) >= len(tag) && strings.EqualFold(string(b[:len(tag)]), tag) {
			return true
		}
	}
	return false
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
