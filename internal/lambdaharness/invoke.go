package lambdaharness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The Lambda Invoke API, as aws-sdk-go-v2's service/lambda Client.Invoke
// speaks it:
//
//	POST /2015-03-31/functions/{FunctionName}/invocations[?Qualifier=...]
//	X-Amz-Invocation-Type: Event | RequestResponse | DryRun  (absent: RequestResponse)
//	Content-Type: application/octet-stream                   (absent without a payload)
//	Authorization, X-Amz-Date, X-Amz-Security-Token, ...     (SigV4; not checked)
//
//	<payload: the event JSON, sent as is>
//
// FunctionName is path-escaped (an ARN's colons arrive as %3A).
const (
	headerInvocationType = "X-Amz-Invocation-Type"
	headerAPIRequestID   = "X-Amzn-Requestid"
	headerAPIErrorType   = "X-Amzn-Errortype"
	headerFunctionError  = "X-Amz-Function-Error"

	// maxAsyncPayload is Lambda's limit on the payload of an Event
	// invocation (synchronous ones share the function URL's 6 MB limit).
	maxAsyncPayload = 1 << 20
)

// FunctionError is an error reported for an invocation: by the function,
// through the Runtime API (POST .../error, the error trailers of a streamed
// response, or POST /runtime/init/error), or by the harness on its behalf.
//
// Types the harness makes up: "Sandbox.Timedout" (no response within
// Options.Timeout), "Function.ResponseSizeTooLarge" (a response of more than
// 6 MB) and "Runtime.BadResponse" (the response could not be read, for example
// because the runtime's connection broke).
type FunctionError struct {
	Type    string // errorType, for example "errorString" for a Go error
	Message string // errorMessage
	// Payload is the error document as the runtime posted it, usually JSON
	// such as {"errorMessage":"...","errorType":"..."}; for an error made up
	// by the harness, a JSON document of that shape.
	Payload []byte
}

func (e *FunctionError) Error() string {
	return "function error: " + e.Type + ": " + e.Message
}

// harnessError is a FunctionError made up by the harness.
func harnessError(typ, msg string) *FunctionError {
	doc, _ := json.Marshal(map[string]string{"errorMessage": msg, "errorType": typ})
	return &FunctionError{Type: typ, Message: msg, Payload: doc}
}

// AsyncResult is the outcome of one asynchronous (Event) invocation.
type AsyncResult struct {
	// RequestID is the invocation's request ID, as announced to the runtime
	// and returned in the 202 answer's X-Amzn-Requestid header.
	RequestID string
	// FunctionName is the function name or ARN from the request path.
	FunctionName string
	// Event is the payload delivered to the function ("{}" if the request had
	// none).
	Event []byte
	// Response is what the function posted to .../response when it
	// succeeded, for example "null" for a Go handler that returns no value.
	// Nil when Err is set.
	Response []byte
	// Err is nil if the function succeeded.
	Err *FunctionError
}

// AsyncInvocations returns how many asynchronous (Event) invocations the
// Invoke API has accepted.
func (h *Harness) AsyncInvocations() int64 { return h.asyncN.Load() }

// AsyncResults returns the outcomes of the asynchronous invocations that have
// finished so far, in the order they finished.
func (h *Harness) AsyncResults() []AsyncResult {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.asyncResults)
}

// WaitAsync waits until at least n asynchronous invocations have finished
// (succeeded or failed) and returns the first n outcomes, in the order they
// finished. If that takes longer than timeout, or the harness is closed, it
// returns the outcomes so far and an error.
func (h *Harness) WaitAsync(n int, timeout time.Duration) ([]AsyncResult, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		h.mu.Lock()
		got, ch := len(h.asyncResults), h.changed
		if got >= n {
			res := slices.Clone(h.asyncResults[:max(n, 0)])
			h.mu.Unlock()
			return res, nil
		}
		h.mu.Unlock()
		select {
		case <-ch:
			continue
		case <-timer.C:
			return h.AsyncResults(), fmt.Errorf("lambdaharness: %d of %d asynchronous invocations finished within %v", got, n, timeout)
		case <-h.done:
			res := h.AsyncResults()
			if len(res) >= n {
				return res[:max(n, 0)], nil
			}
			return res, fmt.Errorf("lambdaharness: closed after %d of %d asynchronous invocations finished", len(res), n)
		}
	}
}

// lambdaAPIError answers an Invoke API request with the error shape of the
// Lambda API (the error code in X-Amzn-Errortype, which aws-sdk-go-v2 maps to
// its typed errors such as *types.ResourceNotFoundException).
func lambdaAPIError(w http.ResponseWriter, status int, code, msg string) {
	kind := "User"
	if status >= 500 {
		kind = "Service"
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(headerAPIRequestID, newID())
	w.Header().Set(headerAPIErrorType, code)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"Type": kind, "Message": msg})
}

// serveInvoke handles POST /2015-03-31/functions/{FunctionName}/invocations.
//
// Event invocations are queued and answered with 202 and an empty body at
// once; their outcome is recorded for WaitAsync. RequestResponse (the default)
// invocations are run synchronously: 200 with the function's response as the
// body, or with X-Amz-Function-Error: Unhandled and the error document. Like
// function URL requests they wait for a free execution environment, so a
// function that synchronously invokes itself needs Concurrency of at least 2.
// DryRun answers 204.
func (h *Harness) serveInvoke(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("FunctionName")
	if !h.acceptsFunction(name) {
		lambdaAPIError(w, http.StatusNotFound, "ResourceNotFoundException", "Function not found: "+functionARNPrefix+name)
		return
	}
	typ := r.Header.Get(headerInvocationType)
	limit := maxRequestPayload
	switch typ {
	case "Event":
		limit = maxAsyncPayload
	case "", "RequestResponse", "DryRun":
	default:
		lambdaAPIError(w, http.StatusBadRequest, "InvalidParameterValueException",
			"1 validation error detected: Value '"+typ+"' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err != nil {
		lambdaAPIError(w, http.StatusBadRequest, "InvalidRequestContentException", "lambdaharness: reading request body: "+err.Error())
		return
	}
	if len(body) > limit {
		lambdaAPIError(w, http.StatusRequestEntityTooLarge, "RequestTooLargeException",
			fmt.Sprintf("Request must be smaller than %d bytes for the InvokeFunction operation", limit))
		return
	}
	if len(body) == 0 {
		body = []byte("{}")
	}
	if !json.Valid(body) {
		lambdaAPIError(w, http.StatusBadRequest, "InvalidRequestContentException", "Could not parse request body into json")
		return
	}
	if typ == "DryRun" {
		w.WriteHeader(http.StatusNoContent)
		return
	}

	inv := &invocation{
		id:       newID(),
		event:    body,
		direct:   true,
		result:   make(chan *result, 1),
		finished: make(chan struct{}),
	}
	if typ == "Event" {
		h.startAsync(inv, name)
		w.Header().Set(headerAPIRequestID, inv.id)
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusAccepted)
		return
	}

	h.log.Debug("lambdaharness: synchronous invocation", "id", inv.id, "function", name)
	var res *result
	err = h.runDirect(r.Context(), inv, func(r *result) { res = r })
	switch {
	case errors.Is(err, errDropped):
		panic(http.ErrAbortHandler)
	case err != nil:
		lambdaAPIError(w, http.StatusServiceUnavailable, "ServiceException", err.Error())
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set(headerAPIRequestID, inv.id)
	hdr.Set("X-Amz-Executed-Version", "$LATEST")
	payload := res.payload
	if res.fnErr != nil {
		hdr.Set(headerFunctionError, "Unhandled")
		payload = res.fnErr.Payload
	}
	hdr.Set("Content-Length", strconv.Itoa(len(payload)))
	w.WriteHeader(http.StatusOK)
	w.Write(payload)
}

// acceptsFunction reports whether the Invoke API serves the function named in
// a request path: a name, a partial ARN or an ARN, each optionally qualified.
func (h *Harness) acceptsFunction(name string) bool {
	if h.functionName == "" {
		return name != ""
	}
	if i := strings.LastIndex(name, ":function:"); i >= 0 {
		name = name[i+len(":function:"):]
	}
	name, _, _ = strings.Cut(name, ":")
	return name == h.functionName
}

// startAsync runs an Event invocation in the background and records its
// outcome. Close drops it if it has not finished.
func (h *Harness) startAsync(inv *invocation, name string) {
	h.asyncN.Add(1)
	h.log.Debug("lambdaharness: asynchronous invocation accepted", "id", inv.id, "function", name)
	h.wg.Add(1) // the calling handler is tracked, so Close is still waiting
	go func() {
		defer h.wg.Done()
		err := h.runDirect(context.Background(), inv, func(res *result) {
			ar := AsyncResult{RequestID: inv.id, FunctionName: name, Event: inv.event, Response: res.payload, Err: res.fnErr}
			if ar.Err != nil {
				ar.Response = nil
			}
			h.mu.Lock()
			h.asyncResults = append(h.asyncResults, ar)
			h.notifyLocked()
			h.mu.Unlock()
		})
		if err != nil {
			h.log.Debug("lambdaharness: asynchronous invocation dropped", "id", inv.id, "err", err)
		}
	}()
}

// runDirect runs an Invoke API invocation: it waits for an execution
// environment, queues inv, waits for the function's answer, the deadline, or
// Close, and passes the outcome (a failed invocation is a result with fnErr
// set) to then before it frees the execution environment. The error is
// errClosed, or errDropped if ctx ended before the runtime took the
// invocation; then is not called in those cases.
func (h *Harness) runDirect(ctx context.Context, inv *invocation, then func(*result)) error {
	select {
	case h.slot <- struct{}{}:
	case <-ctx.Done():
		return errDropped
	case <-h.done:
		return errClosed
	}
	defer func() { <-h.slot }()
	res, err := h.awaitDirect(ctx, inv)
	if err == nil {
		then(res)
	}
	return err
}

// awaitDirect queues inv and waits for its outcome; see runDirect.
func (h *Harness) awaitDirect(ctx context.Context, inv *invocation) (*result, error) {
	now := time.Now()
	inv.traceID = newTraceID(now)
	inv.deadline = now.Add(h.timeout)
	if err := h.enqueue(inv); err != nil {
		if errors.Is(err, errInitError) {
			return &result{fnErr: h.initError()}, nil
		}
		return nil, err
	}
	defer h.finish(inv) // runs before the slot is released

	timer := time.NewTimer(time.Until(inv.deadline))
	defer timer.Stop()
	gone := ctx.Done()
	for {
		select {
		case res := <-inv.result:
			if res.dropped {
				return nil, errDropped
			}
			return res, nil
		case <-gone:
			if h.cancelIfQueued(inv) {
				return nil, errDropped
			}
			gone = nil // the runtime has it; let it finish
		case <-timer.C:
			h.log.Warn("lambdaharness: invocation timed out", "id", inv.id, "timeout", h.timeout)
			return &result{fnErr: harnessError("Sandbox.Timedout", fmt.Sprintf("%s %s Task timed out after %.2f seconds",
				time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), inv.id, h.timeout.Seconds()))}, nil
		case <-h.done:
			return nil, errClosed
		}
	}
}
