package lambdaharness

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// Runtime API wire names, as used by aws-lambda-go and documented at
// https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html.
const (
	headerRequestID    = "Lambda-Runtime-Aws-Request-Id"
	headerDeadlineMS   = "Lambda-Runtime-Deadline-Ms"
	headerFunctionARN  = "Lambda-Runtime-Invoked-Function-Arn"
	headerTraceID      = "Lambda-Runtime-Trace-Id"
	headerResponseMode = "Lambda-Runtime-Function-Response-Mode"
	trailerErrorType   = "Lambda-Runtime-Function-Error-Type"
	trailerErrorBody   = "Lambda-Runtime-Function-Error-Body"

	// integrationContentType marks a function URL streaming response: a JSON
	// prelude, eight NUL bytes, then the raw HTTP body.
	integrationContentType = "application/vnd.awslambda.http-integration-response"

	// FunctionARN is the invoked function ARN announced to the runtime when
	// Options.FunctionName is empty; otherwise the name replaces
	// "lambdaharness" (see Harness.InvokedFunctionARN).
	FunctionARN = functionARNPrefix + "lambdaharness"

	functionARNPrefix = "arn:aws:lambda:us-east-1:123456789012:function:"

	maxPrelude         = 1 << 20 // bound on the JSON prelude of a streamed response
	maxBufferedPayload = 6 << 20 // Lambda's limit for buffered (non-streamed) responses
	maxErrorPayload    = 1 << 20
)

// runtimeError answers a Runtime API request with the API's error shape.
func runtimeError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"errorType": typ, "errorMessage": msg})
}

func accepted(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	io.WriteString(w, `{"status":"OK"}`)
}

// serveNext handles GET /2018-06-01/runtime/invocation/next: a long poll that
// returns the next queued invocation.
func (h *Harness) serveNext(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.nextCalls++
	h.notifyLocked()
	h.mu.Unlock()

	for {
		h.mu.Lock()
		inv := h.dequeueLocked()
		ch := h.changed
		h.mu.Unlock()
		if inv != nil {
			if h.deliver(w, r, inv) {
				h.delivered.Add(1)
				h.log.Debug("lambdaharness: invocation delivered", "id", inv.id)
			} else {
				h.log.Debug("lambdaharness: runtime went away during delivery; requeued", "id", inv.id)
				h.requeue(inv)
			}
			return
		}
		select {
		case <-ch:
		case <-r.Context().Done():
			panic(http.ErrAbortHandler) // never answer 200 without an invocation
		case <-h.done:
			panic(http.ErrAbortHandler) // the runtime sees the API go away
		}
	}
}

// deliver writes inv to the runtime; false means the runtime is (probably)
// gone and the invocation should be requeued. Detection is best effort: a
// write into a half-dead TCP connection can still appear to succeed.
func (h *Harness) deliver(w http.ResponseWriter, r *http.Request, inv *invocation) bool {
	if r.Context().Err() != nil {
		return false
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Content-Length", strconv.Itoa(len(inv.event)))
	hdr.Set(headerRequestID, inv.id)
	hdr.Set(headerDeadlineMS, strconv.FormatInt(inv.deadline.UnixMilli(), 10))
	hdr.Set(headerFunctionARN, h.functionARN)
	hdr.Set(headerTraceID, inv.traceID)
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(inv.event); err != nil {
		return false
	}
	if err := http.NewResponseController(w).Flush(); err != nil {
		return false
	}
	return r.Context().Err() == nil
}

// serveResponse handles POST /2018-06-01/runtime/invocation/{id}/response.
func (h *Harness) serveResponse(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	h.log.Debug("lambdaharness: response", "id", id, "content-type", r.Header.Get("Content-Type"),
		"transfer-encoding", r.TransferEncoding, "trailer", r.Header.Values("Trailer"),
		"response-mode", r.Header.Get(headerResponseMode))
	inv, ok := h.lookup(id)
	if !ok {
		h.log.Warn("lambdaharness: response for unknown, expired or already answered invocation", "id", id)
		runtimeError(w, http.StatusBadRequest, "InvalidRequestID", "no invocation "+id+" is awaiting a response")
		return
	}
	// Bound every read of the response by the invocation deadline. The server
	// clears the connection's deadline again when this handler returns.
	http.NewResponseController(w).SetReadDeadline(inv.deadline)

	if inv.direct {
		h.serveDirectResponse(w, r, inv)
		return
	}
	res, err := h.parseResponse(r)
	if err != nil {
		h.log.Warn("lambdaharness: bad function response", "id", id, "err", err)
		res = textResult(http.StatusBadGateway, "lambdaharness: bad function response: "+truncate(err.Error(), 300))
		io.Copy(io.Discard, r.Body)
	}
	res.conn, _ = r.Context().Value(connInfoKey{}).(*connInfo)
	if !h.handover(inv, res) {
		h.log.Warn("lambdaharness: response arrived after the invocation ended", "id", id)
		runtimeError(w, http.StatusBadRequest, "InvalidStateTransition", "invocation "+id+" is no longer awaiting a response")
		return
	}
	if res.consumed != nil {
		// The front end reads the rest of r.Body; wait until it is done.
		select {
		case <-res.consumed:
		case <-inv.finished:
		case <-h.done:
			return
		}
	}
	accepted(w)
}

// parseResponse turns a Runtime API response into a result. Streamed bodies
// are not read here: the result's body reads them from r.Body.
func (h *Harness) parseResponse(r *http.Request) (*result, error) {
	body := &trailerReader{r: r.Body, req: r}
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case mediaType == integrationContentType:
		br := bufio.NewReaderSize(body, 64<<10)
		p, err := readPrelude(br)
		if err != nil {
			return nil, err
		}
		res := &result{
			status:   p.StatusCode,
			header:   make(http.Header, len(p.Headers)),
			cookies:  p.Cookies,
			body:     br,
			consumed: make(chan struct{}),
		}
		if res.status == 0 {
			res.status = http.StatusOK
		}
		for k, v := range p.Headers {
			res.header.Set(k, v)
		}
		return res, checkStatus(res.status)

	case strings.EqualFold(r.Header.Get(headerResponseMode), "streaming"):
		// A streamed response that is not an HTTP integration response: the
		// bytes are the body.
		res := &result{status: http.StatusOK, header: http.Header{}, body: body, consumed: make(chan struct{})}
		if ct := r.Header.Get("Content-Type"); ct != "" {
			res.header.Set("Content-Type", ct)
		}
		return res, nil

	default:
		// Buffered: a LambdaFunctionURLResponse, or any other JSON, which
		// function URLs return verbatim as application/json with status 200.
		data, err := io.ReadAll(io.LimitReader(body, maxBufferedPayload+1))
		if err != nil {
			return nil, err
		}
		if len(data) > maxBufferedPayload {
			return nil, fmt.Errorf("buffered response exceeds %d bytes", maxBufferedPayload)
		}
		return bufferedResult(data)
	}
}

type prelude struct {
	StatusCode int               `json:"statusCode"`
	Headers    map[string]string `json:"headers"`
	Cookies    []string          `json:"cookies"`
}

// readPrelude reads the JSON prelude and the eight NUL bytes that end it.
// JSON text never contains a raw NUL byte, so the first NUL ends the JSON.
func readPrelude(br *bufio.Reader) (*prelude, error) {
	var raw []byte
	for {
		chunk, err := br.ReadSlice(0)
		raw = append(raw, chunk...)
		if len(raw) > maxPrelude {
			return nil, fmt.Errorf("response prelude exceeds %d bytes", maxPrelude)
		}
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF {
			return nil, errors.New("response ended inside the prelude (no 8-NUL delimiter)")
		}
		return nil, fmt.Errorf("reading response prelude: %w", err)
	}
	var sep [7]byte
	if _, err := io.ReadFull(br, sep[:]); err != nil {
		return nil, fmt.Errorf("reading prelude delimiter: %w", err)
	}
	if sep != [7]byte{} {
		return nil, errors.New("prelude delimiter is not 8 NUL bytes")
	}
	var p prelude
	if err := json.Unmarshal(raw[:len(raw)-1], &p); err != nil {
		return nil, fmt.Errorf("decoding response prelude: %w", err)
	}
	return &p, nil
}

func bufferedResult(data []byte) (*result, error) {
	var probe map[string]json.RawMessage
	if json.Unmarshal(data, &probe) != nil || probe["statusCode"] == nil {
		return &result{
			status: http.StatusOK,
			header: http.Header{"Content-Type": {"application/json"}},
			body:   bytes.NewReader(data),
		}, nil
	}
	var resp struct {
		StatusCode      int               `json:"statusCode"`
		Headers         map[string]string `json:"headers"`
		Body            string            `json:"body"`
		IsBase64Encoded bool              `json:"isBase64Encoded"`
		Cookies         []string          `json:"cookies"`
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		return nil, fmt.Errorf("decoding function URL response: %w", err)
	}
	body := []byte(resp.Body)
	if resp.IsBase64Encoded {
		var err error
		if body, err = base64.StdEncoding.DecodeString(resp.Body); err != nil {
			return nil, fmt.Errorf("decoding base64 response body: %w", err)
		}
	}
	res := &result{
		status:  resp.StatusCode,
		header:  make(http.Header, len(resp.Headers)),
		cookies: resp.Cookies,
		body:    bytes.NewReader(body),
	}
	for k, v := range resp.Headers {
		res.header.Set(k, v)
	}
	if res.header.Get("Content-Type") == "" {
		res.header.Set("Content-Type", "application/json")
	}
	return res, checkStatus(res.status)
}

func checkStatus(code int) error {
	if code < 200 || code > 999 {
		return fmt.Errorf("invalid status code %d", code)
	}
	return nil
}

// trailerReader reads a Runtime API request body and turns the error that a
// runtime reports in the Lambda-Runtime-Function-Error-* trailers (after a
// failure mid-stream) into a read error.
type trailerReader struct {
	r   io.Reader
	req *http.Request
	err error
}

func (t *trailerReader) Read(p []byte) (int, error) {
	if t.err != nil {
		return 0, t.err
	}
	n, err := t.r.Read(p)
	if err == io.EOF {
		// Trailers are only populated once the body has been read to EOF.
		if typ := t.req.Trailer.Get(trailerErrorType); typ != "" {
			fe := &FunctionError{Type: typ}
			fe.Message, fe.Payload = decodeErrorBody(t.req.Trailer.Get(trailerErrorBody))
			err = fe
		}
	}
	if err != nil {
		t.err = err
	}
	return n, err
}

// decodeErrorBody extracts errorMessage from a (possibly base64-encoded) JSON
// error document, falling back to the raw text. It also returns the decoded
// document.
func decodeErrorBody(s string) (msg string, doc []byte) {
	data := []byte(s)
	if dec, err := base64.StdEncoding.DecodeString(s); err == nil {
		data = dec
	}
	var d struct {
		ErrorMessage string `json:"errorMessage"`
	}
	if json.Unmarshal(data, &d) == nil && d.ErrorMessage != "" {
		return d.ErrorMessage, data
	}
	return truncate(string(data), 1000), data
}

// serveError handles POST /2018-06-01/runtime/invocation/{id}/error.
func (h *Harness) serveError(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	inv, ok := h.lookup(id)
	if !ok {
		h.log.Warn("lambdaharness: error for unknown, expired or already answered invocation", "id", id)
		runtimeError(w, http.StatusBadRequest, "InvalidRequestID", "no invocation "+id+" is awaiting a response")
		return
	}
	http.NewResponseController(w).SetReadDeadline(inv.deadline)
	fe := readErrorDoc(r)
	h.log.Warn("lambdaharness: function returned an error", "id", id, "type", fe.Type, "message", fe.Message)
	res := &result{fnErr: fe}
	if !inv.direct {
		res = textResult(http.StatusBadGateway, "lambdaharness: "+truncate(fe.Error(), 300))
	}
	if !h.handover(inv, res) {
		runtimeError(w, http.StatusBadRequest, "InvalidStateTransition", "invocation "+id+" is no longer awaiting a response")
		return
	}
	accepted(w)
}

// serveInitError handles POST /2018-06-01/runtime/init/error.
func (h *Harness) serveInitError(w http.ResponseWriter, r *http.Request) {
	fe := readErrorDoc(r)
	h.log.Error("lambdaharness: function failed to initialize", "type", fe.Type, "message", fe.Message)
	h.failInit(fe)
	accepted(w)
}

func readErrorDoc(r *http.Request) *FunctionError {
	data, _ := io.ReadAll(io.LimitReader(r.Body, maxErrorPayload))
	var doc struct {
		ErrorType    string `json:"errorType"`
		ErrorMessage string `json:"errorMessage"`
	}
	fe := &FunctionError{Type: r.Header.Get(trailerErrorType), Payload: data}
	if json.Unmarshal(data, &doc) == nil {
		if fe.Type == "" {
			fe.Type = doc.ErrorType
		}
		fe.Message = doc.ErrorMessage
	} else {
		fe.Message = truncate(string(data), 1000)
	}
	if fe.Type == "" {
		fe.Type = "Unknown"
	}
	return fe
}

// serveDirectResponse reads the whole answer to a direct (Invoke API)
// invocation, whatever its content type or response mode, and hands it over.
// The read is bounded by the invocation deadline set by serveResponse.
func (h *Harness) serveDirectResponse(w http.ResponseWriter, r *http.Request, inv *invocation) {
	body := &trailerReader{r: r.Body, req: r}
	data, err := io.ReadAll(io.LimitReader(body, maxBufferedPayload+1))
	res := &result{}
	var fe *FunctionError
	switch {
	case errors.As(err, &fe):
		res.fnErr = fe
	case err != nil:
		res.fnErr = harnessError("Runtime.BadResponse", "lambdaharness: reading the function response: "+err.Error())
	case len(data) > maxBufferedPayload:
		io.Copy(io.Discard, body) // let the runtime finish its POST
		res.fnErr = harnessError("Function.ResponseSizeTooLarge",
			fmt.Sprintf("Response payload size exceeded maximum allowed payload size (%d bytes).", maxBufferedPayload))
	default:
		res.payload = data
	}
	if res.fnErr != nil {
		h.log.Warn("lambdaharness: invocation failed", "id", inv.id, "type", res.fnErr.Type, "message", res.fnErr.Message)
	}
	if !h.handover(inv, res) {
		h.log.Warn("lambdaharness: response arrived after the invocation ended", "id", inv.id)
		runtimeError(w, http.StatusBadRequest, "InvalidStateTransition", "invocation "+inv.id+" is no longer awaiting a response")
		return
	}
	accepted(w)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
