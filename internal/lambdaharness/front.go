package lambdaharness

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

const (
	// maxRequestPayload is Lambda's limit on a synchronous invocation payload
	// ("Invocation payload (request and response): 6 MB each for
	// synchronous", https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html);
	// larger request bodies are refused with 413, as a function URL does.
	maxRequestPayload = 6 << 20

	// completionGrace bounds how long a finished response waits for the
	// runtime to ask for its next invocation (see awaitRuntime).
	completionGrace = 2 * time.Second
	// exitGrace is how long a runtime whose connection closed right after a
	// response has to come back before the response is treated as broken.
	exitGrace = 250 * time.Millisecond
)

// serveFront is the function URL: one HTTP request, one invocation.
func (h *Harness) serveFront(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestPayload+1))
	if err != nil {
		http.Error(w, "lambdaharness: reading request body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > maxRequestPayload {
		http.Error(w, "Request Entity Too Large", http.StatusRequestEntityTooLarge)
		return
	}

	// Take an execution environment (at most Options.Concurrency at once).
	ctx := r.Context()
	select {
	case h.slot <- struct{}{}:
	case <-ctx.Done():
		panic(http.ErrAbortHandler)
	case <-h.done:
		http.Error(w, "lambdaharness: closed", http.StatusServiceUnavailable)
		return
	}
	defer func() { <-h.slot }()

	now := time.Now()
	inv := &invocation{
		id:       newID(),
		traceID:  newTraceID(now),
		deadline: now.Add(h.timeout),
		result:   make(chan *result, 1),
		finished: make(chan struct{}),
	}
	inv.event, err = json.Marshal(buildEvent(r, body, inv, now))
	if err != nil {
		http.Error(w, "lambdaharness: encoding event: "+err.Error(), http.StatusInternalServerError)
		return
	}
	if err := h.enqueue(inv); err != nil {
		status := http.StatusBadGateway
		if errors.Is(err, errClosed) {
			status = http.StatusServiceUnavailable
		}
		http.Error(w, err.Error(), status)
		return
	}
	defer h.finish(inv) // runs before the slot is released
	h.log.Debug("lambdaharness: invocation queued", "id", inv.id, "method", r.Method, "uri", r.RequestURI)

	timer := time.NewTimer(time.Until(inv.deadline))
	defer timer.Stop()
	gone := ctx.Done()
	var res *result
	for res == nil {
		select {
		case res = <-inv.result:
		case <-gone:
			if h.cancelIfQueued(inv) {
				h.log.Debug("lambdaharness: client went away before delivery", "id", inv.id)
				panic(http.ErrAbortHandler)
			}
			// The runtime is already working on it: keep going so that its
			// response is consumed, just as Lambda finishes the invocation.
			gone = nil
		case <-timer.C:
			h.log.Warn("lambdaharness: invocation timed out", "id", inv.id, "timeout", h.timeout)
			http.Error(w, "lambdaharness: invocation timed out", http.StatusGatewayTimeout)
			return
		case <-h.done:
			http.Error(w, "lambdaharness: closed", http.StatusServiceUnavailable)
			return
		}
	}
	if res.dropped {
		panic(http.ErrAbortHandler)
	}
	h.writeResult(w, r, inv, res)
}

// writeResult sends res to the client, streaming its body as it arrives.
func (h *Harness) writeResult(w http.ResponseWriter, r *http.Request, inv *invocation, res *result) {
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(inv.deadline) // cleared by the server after the handler

	hdr := w.Header()
	for k, vv := range res.header {
		switch k {
		case "Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
			continue
		case "Content-Length":
			if n, err := strconv.ParseInt(vv[0], 10, 64); err != nil || n < 0 {
				h.log.Warn("lambdaharness: ignoring invalid Content-Length from function", "id", inv.id, "value", vv[0])
				continue
			}
		}
		hdr[k] = vv
	}
	if _, ok := hdr["Content-Type"]; !ok {
		hdr["Content-Type"] = nil // don't let net/http sniff one
	}
	for _, c := range res.cookies {
		hdr.Add("Set-Cookie", c)
	}
	faithful := h.faithful(res)
	if faithful {
		remapContentLength(hdr)
	}
	if lb, ok := res.body.(interface{ Len() int }); ok && res.consumed == nil && hdr.Get("Content-Length") == "" {
		// A buffered (complete) body: its length is known, as on AWS.
		hdr.Set("Content-Length", strconv.Itoa(lb.Len()))
	}
	w.WriteHeader(res.status)
	if faithful {
		// Commit the headers now, without a length: net/http would
		// otherwise compute one for a short body, which AWS does not.
		rc.Flush()
	}

	var cp copyResult
	if res.body != nil {
		limit := int64(-1)
		if faithful {
			limit = h.maxResponse
		}
		cp = copyFlushing(w, rc, res.body, r.Method == http.MethodHead, h.newPacer(res), limit)
	}
	calls := h.nextCallsNow()
	if res.consumed != nil {
		close(res.consumed) // lets the Runtime API acknowledge the response
	}
	switch {
	case cp.readErr != nil:
		h.log.Warn("lambdaharness: response stream failed; aborting client response", "id", inv.id, "err", cp.readErr)
		panic(http.ErrAbortHandler)
	case cp.capped:
		h.log.Warn("lambdaharness: streamed response exceeds the maximum response size; cutting the client off",
			"id", inv.id, "max", h.maxResponse)
		panic(http.ErrAbortHandler)
	case cp.writeErr != nil:
		h.log.Debug("lambdaharness: client stopped reading the response", "id", inv.id, "err", cp.writeErr)
		return
	}
	if res.consumed != nil && !h.awaitRuntime(inv, res.conn, calls) {
		h.log.Warn("lambdaharness: function process went away right after responding; aborting client response", "id", inv.id)
		panic(http.ErrAbortHandler)
	}
}

// copyResult is how copyFlushing ended.
type copyResult struct {
	readErr  error // the function's stream failed
	writeErr error // the client went away
	capped   bool  // the body went past the size limit
}

// copyFlushing copies body to w, flushing after every chunk so the client sees
// the stream as the function produces it, at the pace p allows, and stops
// writing after limit bytes (a negative limit is none). After a write error
// (the client went away), past the limit, or with discard set (HEAD), body is
// still read to the end so that the runtime's response completes.
func copyFlushing(w io.Writer, rc *http.ResponseController, body io.Reader, discard bool, p *pacer, limit int64) copyResult {
	var cr copyResult
	buf := make([]byte, 64<<10)
	var n64 int64
	for {
		n, err := body.Read(buf)
		if n > 0 && !discard && cr.writeErr == nil && !cr.capped {
			chunk := buf[:n]
			if limit >= 0 && n64+int64(n) > limit {
				chunk, cr.capped = chunk[:limit-n64], true
			}
			if _, werr := w.Write(chunk); werr != nil {
				cr.writeErr = werr
			} else if ferr := rc.Flush(); ferr != nil {
				cr.writeErr = ferr
			}
			n64 += int64(len(chunk))
			p.wrote(len(chunk))
		}
		if err == io.EOF {
			return cr
		}
		if err != nil {
			cr.readErr = err
			return cr
		}
	}
}

// awaitRuntime waits, after a streamed response has been read to its end, for
// evidence that the function process survived it: its next GET .../next. A Go
// runtime whose handler panics mid-stream can still end the HTTP request body
// cleanly (lambdaurl closes its pipe in a deferred call) just before the
// process dies, and without this check the client would see a truncated body
// as a complete one. It reports false if the runtime's connection closed and
// no next call followed; it gives up waiting (reporting true) after
// completionGrace, for runtimes that do work between invocations.
func (h *Harness) awaitRuntime(inv *invocation, conn *connInfo, calls uint64) bool {
	var connClosed <-chan struct{}
	if conn != nil {
		connClosed = conn.closed
	}
	grace := time.NewTimer(min(completionGrace, time.Until(inv.deadline)))
	defer grace.Stop()
	var exit <-chan time.Time
	for {
		h.mu.Lock()
		ch, moved := h.changed, h.nextCalls != calls
		h.mu.Unlock()
		if moved {
			return true
		}
		select {
		case <-ch:
		case <-connClosed:
			// A runtime that closes connections between requests comes back
			// on a new one promptly; a dead one never does.
			connClosed = nil
			t := time.NewTimer(exitGrace)
			defer t.Stop()
			exit = t.C
		case <-exit:
			return false
		case <-grace.C:
			return true
		case <-h.done:
			return true
		}
	}
}

// buildEvent converts an HTTP request into a function URL event (payload
// format version 2.0).
func buildEvent(r *http.Request, body []byte, inv *invocation, now time.Time) any {
	headers := make(map[string]string, len(r.Header)+5)
	var cookies []string
	for k, vv := range r.Header {
		lk := strings.ToLower(k)
		if lk == "cookie" {
			// Function URLs move cookies out of the headers. (Note that
			// lambdaurl does not put them back into the http.Request.)
			for _, v := range vv {
				for c := range strings.SplitSeq(v, ";") {
					if c = strings.TrimSpace(c); c != "" {
						cookies = append(cookies, c)
					}
				}
			}
			continue
		}
		// "Any headers with multiple values are combined into a single
		// comma-separated value" (payload format 2.0,
		// https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html),
		// and lambdaurl hands the function that one value.
		headers[lk] = strings.Join(vv, ",")
	}
	sourceIP, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		sourceIP = r.RemoteAddr
	}
	port := "80"
	if _, p, err := net.SplitHostPort(r.Host); err == nil {
		port = p
	}
	headers["host"] = r.Host
	if xff := headers["x-forwarded-for"]; xff != "" {
		headers["x-forwarded-for"] = xff + ", " + sourceIP
	} else {
		headers["x-forwarded-for"] = sourceIP
	}
	headers["x-forwarded-proto"] = "http"
	headers["x-forwarded-port"] = port
	headers["x-amzn-trace-id"] = strings.TrimSuffix(inv.traceID, ";Sampled=0")

	rawPath := r.URL.EscapedPath()
	if strings.HasPrefix(r.RequestURI, "/") {
		rawPath, _, _ = strings.Cut(r.RequestURI, "?")
	}
	var query map[string]string
	if values, err := url.ParseQuery(r.URL.RawQuery); err == nil && len(values) > 0 {
		query = make(map[string]string, len(values))
		for k, vv := range values {
			query[k] = strings.Join(vv, ",")
		}
	}
	domainPrefix, _, _ := strings.Cut(r.Host, ".")

	ev := events.LambdaFunctionURLRequest{
		Version:               "2.0",
		RawPath:               rawPath,
		RawQueryString:        r.URL.RawQuery,
		Cookies:               cookies,
		Headers:               headers,
		QueryStringParameters: query,
		RequestContext: events.LambdaFunctionURLRequestContext{
			AccountID:    "anonymous",
			RequestID:    inv.id,
			APIID:        domainPrefix,
			DomainName:   r.Host,
			DomainPrefix: domainPrefix,
			Time:         now.UTC().Format("02/Jan/2006:15:04:05 -0700"),
			TimeEpoch:    now.UnixMilli(),
			HTTP: events.LambdaFunctionURLRequestContextHTTPDescription{
				Method:    r.Method,
				Path:      rawPath,
				Protocol:  r.Proto,
				SourceIP:  sourceIP,
				UserAgent: r.UserAgent(),
			},
		},
	}
	if len(body) > 0 {
		ev.Body = base64.StdEncoding.EncodeToString(body)
		ev.IsBase64Encoded = true
	}
	return struct {
		events.LambdaFunctionURLRequest
		RouteKey string `json:"routeKey"`
	}{ev, "$default"}
}
