package lambdaharness_test

// Tests of Options.Concurrency and of the Invoke API.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/lambdaharness"
)

// sdkEscape escapes a path label the way aws-sdk-go-v2 does: everything but
// unreserved characters, so an ARN's colons become %3A.
func sdkEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// invokeAPI sends the request that aws-sdk-go-v2's lambda Client.Invoke
// (service/lambda v1.114.2) sends for the given function, invocation type
// ("" for the default, RequestResponse) and payload (nil for none).
func invokeAPI(t *testing.T, c *http.Client, h *lambdaharness.Harness, function, typ string, payload []byte) (*http.Response, []byte) {
	t.Helper()
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequest(http.MethodPost, h.InvokeEndpoint()+"/2015-03-31/functions/"+sdkEscape(function)+"/invocations", body)
	if err != nil {
		t.Fatal(err)
	}
	hdr := req.Header
	if payload != nil {
		hdr.Set("Content-Type", "application/octet-stream")
	}
	if typ != "" {
		hdr.Set("X-Amz-Invocation-Type", typ)
	}
	hdr.Set("Accept-Encoding", "gzip")
	hdr.Set("Amz-Sdk-Invocation-Id", "53c498b1-3d41-43cf-970c-16271db88087")
	hdr.Set("Amz-Sdk-Request", "attempt=1; max=3")
	hdr.Set("User-Agent", "aws-sdk-go-v2/1.47.7 ua/2.1 os/linux lang/go#1.26.8 md/GOOS#linux md/GOARCH#amd64 api/lambda#1.114.2 m/E,g")
	hdr.Set("X-Amz-Date", time.Now().UTC().Format("20060102T150405Z"))
	hdr.Set("X-Amz-Security-Token", "token")
	hdr.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/lambda/aws4_request, "+
		"SignedHeaders=amz-sdk-invocation-id;amz-sdk-request;content-length;content-type;host;x-amz-date;x-amz-invocation-type;x-amz-security-token, "+
		"Signature=075a0a133cac5564197228e3c0938ead90313a3d85ee94453a3c00cf535b7243")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, data
}

// echoedAsync is what testdata/echo answers to a direct event.
type echoedAsync struct {
	Echoed    string `json:"echoed"`
	RequestID string `json:"requestId"`
	Pid       int    `json:"pid"`
}

// TestConcurrency runs two echo processes as two execution environments:
// two slow requests are served at once.
func TestConcurrency(t *testing.T) {
	h := newHarness(t, lambdaharness.Options{Concurrency: 2})
	startEcho(t, h)
	startEcho(t, h)
	c := newClient(t)
	const sleep = 500 * time.Millisecond

	// One request alone (which also gives both processes time to start).
	start := time.Now()
	resp, _ := doEcho(t, c, http.MethodGet, h.URL()+"/one?sleep="+sleep.String(), nil, nil)
	single := time.Since(start)
	if resp.StatusCode != 299 {
		t.Fatalf("status = %d", resp.StatusCode)
	}

	start = time.Now()
	var wg sync.WaitGroup
	pids := make([]string, 2)
	for i := range pids {
		wg.Go(func() {
			r := wait(t, goGet(c, fmt.Sprintf("%s/two/%d?sleep=%v", h.URL(), i, sleep)))
			if r.err != nil || r.resp.StatusCode != 299 {
				t.Errorf("request %d: %+v", i, r)
				return
			}
			pids[i] = r.resp.Header.Get("X-Pid")
		})
	}
	wg.Wait()
	both := time.Since(start)
	t.Logf("one request: %v; two at once: %v", single, both)
	if both >= 2*single || both >= 2*sleep {
		t.Errorf("two requests took %v, one took %v: they did not overlap", both, single)
	}
	if pids[0] == "" || pids[0] == pids[1] {
		t.Errorf("served by processes %q and %q, want two different ones", pids[0], pids[1])
	}
	if got := h.Invocations(); got != 3 {
		t.Errorf("Invocations = %d, want 3", got)
	}
}

// TestConcurrencyCap checks with hand-driven runtimes that no more than
// Concurrency invocations are handed out at once.
func TestConcurrencyCap(t *testing.T) {
	t.Parallel()
	h := newHarness(t, lambdaharness.Options{Concurrency: 2})
	c := newClient(t)
	rt0, rt1, rt2 := newFakeRuntime(t, h), newFakeRuntime(t, h), newFakeRuntime(t, h)

	res := map[string]<-chan clientResult{}
	for _, p := range []string{"/a", "/b", "/c"} {
		res[p] = goGet(c, h.URL()+p)
	}
	d0, d1 := rt0.next(), rt1.next()
	// A third runtime gets nothing while two invocations are running.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	if d := rt2.nextCtx(ctx); d.err == nil {
		t.Fatalf("a third invocation was handed out while two were running: %+v", d)
	}
	cancel()
	// Finishing one lets the third through.
	rt0.post("runtime/invocation/"+d0.id+"/response", integration, streamed(`{"statusCode":200}`, d0.event.RawPath), "")
	d2 := rt0.next()
	for _, x := range []struct {
		rt *fakeRuntime
		d  delivery
	}{{rt1, d1}, {rt0, d2}} {
		x.rt.post("runtime/invocation/"+x.d.id+"/response", integration, streamed(`{"statusCode":200}`, x.d.event.RawPath), "")
		x.rt.poll()
	}
	for p, ch := range res {
		if r := wait(t, ch); r.err != nil || string(r.body) != p {
			t.Errorf("%s: %+v", p, r)
		}
	}
}

// TestConcurrencyMixed sends function URL requests and asynchronous
// invocations at once to two environments; none is lost.
func TestConcurrencyMixed(t *testing.T) {
	h := newHarness(t, lambdaharness.Options{Concurrency: 2, FunctionName: "echo"})
	startEcho(t, h)
	startEcho(t, h)
	c := newClient(t)

	const nURL, nAsync = 12, 20
	var wg sync.WaitGroup
	for i := range nURL {
		wg.Go(func() {
			r := wait(t, goGet(c, fmt.Sprintf("%s/url/%d", h.URL(), i)))
			var e echoed
			if r.err != nil || r.resp.StatusCode != 299 || json.Unmarshal(r.body, &e) != nil || e.Path != fmt.Sprintf("/url/%d", i) {
				t.Errorf("request %d: %+v", i, r)
			}
		})
	}
	for i := range nAsync {
		wg.Go(func() {
			resp, _ := invokeAPI(t, c, h, "echo", "Event", fmt.Appendf(nil, `{"echoAsync":"%d"}`, i))
			if resp.StatusCode != http.StatusAccepted {
				t.Errorf("event %d: status %d", i, resp.StatusCode)
			}
		})
	}
	wg.Wait()
	results, err := h.WaitAsync(nAsync, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range results {
		var e echoedAsync
		if r.Err != nil || json.Unmarshal(r.Response, &e) != nil {
			t.Errorf("result %+v", r)
			continue
		}
		seen[e.Echoed] = true
	}
	if len(seen) != nAsync {
		t.Errorf("%d distinct events echoed, want %d", len(seen), nAsync)
	}
	if got := h.Invocations(); got != nURL+nAsync {
		t.Errorf("Invocations = %d, want %d", got, nURL+nAsync)
	}
}

// TestAsyncInvoke: Event invocations are accepted at once, run when an
// execution environment is free, and their outcomes recorded.
func TestAsyncInvoke(t *testing.T) {
	t.Parallel()
	h := newHarness(t, lambdaharness.Options{FunctionName: "echo"})
	startEcho(t, h)
	c := newClient(t)

	// Occupy the only execution environment.
	busy := goGet(c, h.URL()+"/busy?sleep=1s")
	for deadline := time.Now().Add(10 * time.Second); h.Invocations() < 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the busy request was not delivered")
		}
	}

	events := map[string]string{
		"arn:aws:lambda:us-east-1:123456789012:function:echo": `{"echoAsync":"hello"}`,
		"echo":              `{"echoAsync":"bad","fail":"it broke"}`,
		"echo:$LATEST":      `{"echoAsync":"streamed","stream":true}`,
		"123:function:echo": `{"echoAsync":"","sleep":"10ms"}`,
	}
	ids := map[string]string{} // request ID -> event
	start := time.Now()
	for fn, ev := range events {
		resp, body := invokeAPI(t, c, h, fn, "Event", []byte(ev))
		if resp.StatusCode != http.StatusAccepted || len(body) != 0 {
			t.Errorf("%s: status %d, body %q", fn, resp.StatusCode, body)
		}
		id := resp.Header.Get("X-Amzn-Requestid")
		if len(id) != 36 {
			t.Errorf("%s: X-Amzn-Requestid = %q", fn, id)
		}
		ids[id] = ev
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("accepting %d events took %v", len(events), d)
	}
	if got := h.AsyncResults(); len(got) != 0 {
		t.Errorf("events finished while the environment was busy: %+v", got)
	}
	if got := h.AsyncInvocations(); got != int64(len(events)) {
		t.Errorf("AsyncInvocations = %d, want %d", got, len(events))
	}
	if r := wait(t, busy); r.err != nil || r.resp.StatusCode != 299 {
		t.Errorf("busy request: %+v", r)
	}

	results, err := h.WaitAsync(len(events), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		ev, ok := ids[r.RequestID]
		if !ok {
			t.Errorf("result for unknown request ID: %+v", r)
			continue
		}
		if string(r.Event) != ev {
			t.Errorf("%s: Event = %q, want %q", r.RequestID, r.Event, ev)
		}
		var in struct {
			EchoAsync string `json:"echoAsync"`
			Fail      string `json:"fail"`
		}
		json.Unmarshal([]byte(ev), &in)
		if in.Fail != "" {
			if r.Err == nil || r.Err.Type != "errorString" || r.Err.Message != in.Fail ||
				!strings.Contains(string(r.Err.Payload), `"errorMessage":"it broke"`) || r.Response != nil {
				t.Errorf("%s: want a function error, got %+v (err %+v)", ev, r, r.Err)
			}
			continue
		}
		var out echoedAsync
		if r.Err != nil || json.Unmarshal(r.Response, &out) != nil || out.Echoed != in.EchoAsync || out.RequestID != r.RequestID {
			t.Errorf("%s: got %+v (err %+v, response %q)", ev, r, r.Err, r.Response)
		}
	}
	if extra, err := h.WaitAsync(len(events)+1, 100*time.Millisecond); err == nil {
		t.Errorf("WaitAsync for more events than were sent succeeded: %+v", extra)
	}
	if got := h.Invocations(); got != 1+int64(len(events)) {
		t.Errorf("Invocations = %d, want %d", got, 1+len(events))
	}
}

// TestInvokeSelf has the function invoke itself from inside a function URL
// invocation, asynchronously with one execution environment (no deadlock)
// and synchronously with two.
func TestInvokeSelf(t *testing.T) {
	type selfResult struct {
		Status        int    `json:"status"`
		RequestID     string `json:"requestId"`
		FunctionError string `json:"functionError"`
		Body          string `json:"body"`
	}
	get := func(c *http.Client, url string) selfResult {
		t.Helper()
		r := wait(t, goGet(c, url))
		var s selfResult
		if r.err != nil || r.resp.StatusCode != http.StatusOK || json.Unmarshal(r.body, &s) != nil {
			t.Fatalf("GET %s: %+v %q", url, r, r.body)
		}
		return s
	}

	t.Run("Event", func(t *testing.T) {
		h := newHarness(t, lambdaharness.Options{FunctionName: "echo"})
		startEcho(t, h)
		c := newClient(t)
		s := get(c, h.URL()+"/invoke-self?msg=from-inside")
		if s.Status != http.StatusAccepted || s.Body != "" {
			t.Errorf("Invoke API answered the function with %+v", s)
		}
		results, err := h.WaitAsync(1, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var out echoedAsync
		if r := results[0]; r.RequestID != s.RequestID || r.Err != nil || json.Unmarshal(r.Response, &out) != nil ||
			out.Echoed != "from-inside" || r.FunctionName != h.InvokedFunctionARN() {
			t.Errorf("result %+v (response %q)", r, r.Response)
		}
	})

	t.Run("RequestResponse", func(t *testing.T) {
		h := newHarness(t, lambdaharness.Options{FunctionName: "echo", Concurrency: 2})
		startEcho(t, h, "AWS_LAMBDA_MAX_CONCURRENCY=2")
		c := newClient(t)
		s := get(c, h.URL()+"/invoke-self?msg=sync&type=RequestResponse")
		var out echoedAsync
		if s.Status != http.StatusOK || s.FunctionError != "" || json.Unmarshal([]byte(s.Body), &out) != nil ||
			out.Echoed != "sync" || out.RequestID != s.RequestID {
			t.Errorf("Invoke API answered the function with %+v", s)
		}
		if got := h.AsyncInvocations(); got != 0 {
			t.Errorf("AsyncInvocations = %d", got)
		}
	})
}

// TestInvokeSync covers RequestResponse invocations from outside.
func TestInvokeSync(t *testing.T) {
	h := newHarness(t, lambdaharness.Options{})
	startEcho(t, h)
	c := newClient(t)

	for _, typ := range []string{"", "RequestResponse"} {
		resp, body := invokeAPI(t, c, h, "anything", typ, []byte(`{"echoAsync":"sync"}`))
		var out echoedAsync
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Amz-Function-Error") != "" ||
			json.Unmarshal(body, &out) != nil || out.Echoed != "sync" || out.RequestID != resp.Header.Get("X-Amzn-Requestid") {
			t.Errorf("type %q: %d %v %q", typ, resp.StatusCode, resp.Header, body)
		}
	}
	resp, body := invokeAPI(t, c, h, "anything", "", []byte(`{"echoAsync":"","fail":"nope"}`))
	var doc struct{ ErrorMessage, ErrorType string }
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Amz-Function-Error") != "Unhandled" ||
		json.Unmarshal(body, &doc) != nil || doc.ErrorMessage != "nope" || doc.ErrorType != "errorString" {
		t.Errorf("failing invocation: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	if got := h.AsyncInvocations(); got != 0 {
		t.Errorf("AsyncInvocations = %d", got)
	}
}

func TestInvokeAPIErrors(t *testing.T) {
	h := newHarness(t, lambdaharness.Options{FunctionName: "echo"})
	c := newClient(t)

	cases := []struct {
		name, function, typ string
		payload             []byte
		status              int
		errType             string
	}{
		{"other function", "other", "Event", []byte(`{}`), http.StatusNotFound, "ResourceNotFoundException"},
		{"other function ARN", "arn:aws:lambda:us-east-1:123456789012:function:echo2", "Event", []byte(`{}`), http.StatusNotFound, "ResourceNotFoundException"},
		{"bad type", "echo", "Sometime", []byte(`{}`), http.StatusBadRequest, "InvalidParameterValueException"},
		{"not JSON", "echo", "Event", []byte(`{nope`), http.StatusBadRequest, "InvalidRequestContentException"},
		{"too large", "echo", "Event", []byte(`"` + strings.Repeat("x", 1<<20) + `"`), http.StatusRequestEntityTooLarge, "RequestTooLargeException"},
		{"dry run", "echo", "DryRun", nil, http.StatusNoContent, ""},
	}
	for _, tc := range cases {
		resp, body := invokeAPI(t, c, h, tc.function, tc.typ, tc.payload)
		if resp.StatusCode != tc.status || resp.Header.Get("X-Amzn-Errortype") != tc.errType {
			t.Errorf("%s: %d %s %q", tc.name, resp.StatusCode, resp.Header.Get("X-Amzn-Errortype"), body)
		}
		if tc.errType != "" {
			var doc struct{ Type, Message string }
			if json.Unmarshal(body, &doc) != nil || doc.Type != "User" || doc.Message == "" {
				t.Errorf("%s: error body %q", tc.name, body)
			}
		}
	}
	if got := h.AsyncInvocations(); got != 0 {
		t.Errorf("AsyncInvocations = %d, want 0", got)
	}
}

// TestAsyncRuntimeOutcomes plays the runtime by hand for Event invocations.
func TestAsyncRuntimeOutcomes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, lambdaharness.Options{Timeout: time.Second})
	f := newFakeRuntime(t, h)
	c := newClient(t)

	// The event is delivered as sent, announced like any invocation, and the
	// runtime's response is read (and kept), never sent to anyone.
	before := time.Now()
	resp, _ := invokeAPI(t, c, h, "fn", "Event", []byte(`{"k": [1, 2]}`))
	id := resp.Header.Get("X-Amzn-Requestid")
	d := f.next()
	if d.id != id || string(d.raw) != `{"k": [1, 2]}` {
		t.Errorf("delivered %s %q, want %s", d.id, d.raw, id)
	}
	if got := d.header.Get("Lambda-Runtime-Invoked-Function-Arn"); got != lambdaharness.FunctionARN || got != h.InvokedFunctionARN() {
		t.Errorf("function ARN = %q", got)
	}
	if ms, err := strconv.ParseInt(d.header.Get("Lambda-Runtime-Deadline-Ms"), 10, 64); err != nil ||
		time.UnixMilli(ms).Before(before.Add(500*time.Millisecond)) || time.UnixMilli(ms).After(time.Now().Add(time.Second)) {
		t.Errorf("Lambda-Runtime-Deadline-Ms = %q", d.header.Get("Lambda-Runtime-Deadline-Ms"))
	}
	if st := f.post("runtime/invocation/"+d.id+"/response", "application/json", strings.NewReader("null"), ""); st != http.StatusAccepted {
		t.Errorf("response POST status = %d", st)
	}
	f.poll()
	results, err := h.WaitAsync(1, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r := results[0]; r.RequestID != id || r.FunctionName != "fn" || string(r.Response) != "null" || r.Err != nil {
		t.Errorf("result %+v", r)
	}

	// Without a payload the function gets {}. An /error is recorded.
	invokeAPI(t, c, h, "fn", "Event", nil)
	d = f.next()
	if string(d.raw) != "{}" {
		t.Errorf("event without payload delivered as %q", d.raw)
	}
	errDoc := `{"errorMessage":"boom","errorType":"MyError"}`
	if st := f.post("runtime/invocation/"+d.id+"/error", "application/json", strings.NewReader(errDoc), ""); st != http.StatusAccepted {
		t.Errorf("error POST status = %d", st)
	}
	f.poll()

	// A streamed response that fails midway (error trailers) is a failure.
	invokeAPI(t, c, h, "fn", "Event", []byte(`{"n":3}`))
	d = f.next()
	f.post("runtime/invocation/"+d.id+"/response", "application/octet-stream", strings.NewReader("partial"), "Runtime.StreamError")
	f.poll()

	// No answer in time: Sandbox.Timedout, and the late answer is refused.
	invokeAPI(t, c, h, "fn", "Event", []byte(`{"n":4}`))
	d = f.next()
	results, err = h.WaitAsync(4, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if st := f.post("runtime/invocation/"+d.id+"/response", "application/json", strings.NewReader("{}"), ""); st != http.StatusBadRequest {
		t.Errorf("late response POST status = %d, want 400", st)
	}
	want := []struct{ typ, msg, payload string }{
		{"MyError", "boom", errDoc},
		{"Runtime.StreamError", "stream broke", `{"errorMessage":"stream broke","errorType":"Runtime.StreamError"}`},
		{"Sandbox.Timedout", "Task timed out after 1.00 seconds", `"errorType":"Sandbox.Timedout"`},
	}
	for i, w := range want {
		r := results[i+1]
		if r.Err == nil || r.Response != nil || r.Err.Type != w.typ || !strings.Contains(r.Err.Message, w.msg) ||
			!strings.Contains(string(r.Err.Payload), w.payload) {
			t.Errorf("result %d: %+v, error %+v", i+1, r, r.Err)
		}
	}
	if got := h.AsyncInvocations(); got != 4 {
		t.Errorf("AsyncInvocations = %d, want 4", got)
	}
}
