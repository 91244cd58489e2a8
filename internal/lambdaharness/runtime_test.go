package lambdaharness_test

// Tests that play the function's side of the Runtime API by hand, to cover
// wire cases a lambdaurl bootstrap does not produce on demand.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/pullthrough/pullthrough/internal/lambdaharness"
)

// fakeRuntime is a hand-driven Runtime API client.
type fakeRuntime struct {
	t       *testing.T
	base    string
	c       *http.Client
	pending <-chan delivery // a poll started by poll
}

func newFakeRuntime(t *testing.T, h *lambdaharness.Harness) *fakeRuntime {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &fakeRuntime{t: t, base: "http://" + h.RuntimeAPI() + "/2018-06-01/", c: &http.Client{Transport: tr}}
}

type delivery struct {
	id     string
	header http.Header
	raw    []byte // the event as delivered
	event  events.LambdaFunctionURLRequest
	err    error
}

func (f *fakeRuntime) nextCtx(ctx context.Context) delivery {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.base+"runtime/invocation/next", nil)
	resp, err := f.c.Do(req)
	if err != nil {
		return delivery{err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return delivery{err: errors.New(resp.Status)}
	}
	d := delivery{id: resp.Header.Get("Lambda-Runtime-Aws-Request-Id"), header: resp.Header}
	if d.raw, d.err = io.ReadAll(resp.Body); d.err == nil {
		d.err = json.Unmarshal(d.raw, &d.event)
	}
	return d
}

// next waits (up to 10s) for the next invocation, taking over the poll
// started by poll if there is one.
func (f *fakeRuntime) next() delivery {
	f.t.Helper()
	if f.pending == nil {
		f.poll()
	}
	var d delivery
	select {
	case d = <-f.pending:
	case <-time.After(10 * time.Second):
		f.t.Fatal("next: no invocation within 10s")
	}
	f.pending = nil
	if d.err != nil {
		f.t.Fatalf("next: %v", d.err)
	}
	return d
}

// poll starts asking for the next invocation in the background, as a runtime
// does right after responding. The harness closing ends the poll.
func (f *fakeRuntime) poll() {
	if f.pending != nil {
		return
	}
	ch := make(chan delivery, 1)
	go func() { ch <- f.nextCtx(context.Background()) }()
	f.pending = ch
}

// trailingReader sets error trailers once its body is exhausted, the way
// aws-lambda-go reports a failure in the middle of a streamed response.
type trailingReader struct {
	r       io.Reader
	trailer http.Header
	errType string
}

func (tr *trailingReader) Read(p []byte) (int, error) {
	n, err := tr.r.Read(p)
	if err == io.EOF && tr.errType != "" {
		tr.trailer.Set("Lambda-Runtime-Function-Error-Type", tr.errType)
		tr.trailer.Set("Lambda-Runtime-Function-Error-Body",
			base64.StdEncoding.EncodeToString([]byte(`{"errorMessage":"stream broke","errorType":"`+tr.errType+`"}`)))
	}
	return n, err
}

// post sends a chunked body with declared error trailers, like aws-lambda-go.
func (f *fakeRuntime) post(path, contentType string, body io.Reader, errType string) int {
	f.t.Helper()
	tr := &trailingReader{r: body, trailer: http.Header{
		"Lambda-Runtime-Function-Error-Type": nil,
		"Lambda-Runtime-Function-Error-Body": nil,
	}, errType: errType}
	req, _ := http.NewRequest(http.MethodPost, f.base+path, tr)
	req.Trailer = tr.trailer
	req.Header.Set("Content-Type", contentType)
	resp, err := f.c.Do(req)
	if err != nil {
		f.t.Fatalf("POST %s: %v", path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func streamed(prelude string, body string) io.Reader {
	return strings.NewReader(prelude + "\x00\x00\x00\x00\x00\x00\x00\x00" + body)
}

const integration = "application/vnd.awslambda.http-integration-response"

type clientResult struct {
	resp *http.Response
	body []byte
	err  error
}

// goDo sends req in the background and reads the whole response.
func goDo(c *http.Client, req *http.Request) <-chan clientResult {
	ch := make(chan clientResult, 1)
	go func() {
		resp, err := c.Do(req)
		if err != nil {
			ch <- clientResult{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		ch <- clientResult{resp: resp, body: body, err: err}
	}()
	return ch
}

func goGet(c *http.Client, url string) <-chan clientResult {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	return goDo(c, req)
}

func wait(t *testing.T, ch <-chan clientResult) clientResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("client request did not finish")
		return clientResult{}
	}
}

func TestRuntimeEventAndStreamedResponse(t *testing.T) {
	h := newHarness(t, lambdaharness.Options{Timeout: time.Minute})
	f := newFakeRuntime(t, h)
	c := newClient(t)

	req, _ := http.NewRequest(http.MethodPost, h.URL()+"/a%2Fb/c?x=1&x=2&y=%20", strings.NewReader("\x00payload"))
	req.Header.Add("X-Multi", "a")
	req.Header.Add("X-Multi", "b")
	req.Header.Set("Cookie", "k1=v1; k2=v2")
	req.Header.Set("User-Agent", "harness-test/1")
	before := time.Now()
	res := goDo(c, req)

	d := f.next()
	if d.id == "" || d.id != d.event.RequestContext.RequestID {
		t.Errorf("request ID header %q, event %q", d.id, d.event.RequestContext.RequestID)
	}
	if ms, err := strconv.ParseInt(d.header.Get("Lambda-Runtime-Deadline-Ms"), 10, 64); err != nil ||
		time.UnixMilli(ms).Before(before.Add(59*time.Second)) || time.UnixMilli(ms).After(time.Now().Add(time.Minute)) {
		t.Errorf("Lambda-Runtime-Deadline-Ms = %q", d.header.Get("Lambda-Runtime-Deadline-Ms"))
	}
	if got := d.header.Get("Lambda-Runtime-Invoked-Function-Arn"); got != lambdaharness.FunctionARN {
		t.Errorf("function ARN = %q", got)
	}
	if got := d.header.Get("Lambda-Runtime-Trace-Id"); !strings.HasPrefix(got, "Root=1-") {
		t.Errorf("trace ID = %q", got)
	}
	ev := d.event
	host := strings.TrimPrefix(h.URL(), "http://")
	checks := []struct{ name, got, want string }{
		{"version", ev.Version, "2.0"},
		{"rawPath", ev.RawPath, "/a%2Fb/c"},
		{"rawQueryString", ev.RawQueryString, "x=1&x=2&y=%20"},
		{"queryStringParameters.x", ev.QueryStringParameters["x"], "1,2"},
		{"queryStringParameters.y", ev.QueryStringParameters["y"], " "},
		{"headers.x-multi", ev.Headers["x-multi"], "a,b"},
		{"headers.host", ev.Headers["host"], host},
		{"headers.user-agent", ev.Headers["user-agent"], "harness-test/1"},
		{"headers.content-length", ev.Headers["content-length"], "8"},
		{"headers.cookie", ev.Headers["cookie"], ""},
		{"cookies", strings.Join(ev.Cookies, "|"), "k1=v1|k2=v2"},
		{"http.method", ev.RequestContext.HTTP.Method, "POST"},
		{"http.path", ev.RequestContext.HTTP.Path, "/a%2Fb/c"},
		{"http.protocol", ev.RequestContext.HTTP.Protocol, "HTTP/1.1"},
		{"http.sourceIp", ev.RequestContext.HTTP.SourceIP, "127.0.0.1"},
		{"http.userAgent", ev.RequestContext.HTTP.UserAgent, "harness-test/1"},
		{"domainName", ev.RequestContext.DomainName, host},
		{"body", ev.Body, base64.StdEncoding.EncodeToString([]byte("\x00payload"))},
		{"isBase64Encoded", strconv.FormatBool(ev.IsBase64Encoded), "true"},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("event %s = %q, want %q", ck.name, ck.got, ck.want)
		}
	}

	if st := f.post("runtime/invocation/"+d.id+"/response", integration,
		streamed(`{"statusCode":418,"headers":{"X-One":"1","Content-Type":"text/plain"},"cookies":["a=b","c=d"]}`, "short and stout"), ""); st != http.StatusAccepted {
		t.Errorf("response POST status = %d", st)
	}
	f.poll()
	r := wait(t, res)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.resp.StatusCode != 418 || r.resp.Header.Get("X-One") != "1" || r.resp.Header.Get("Content-Type") != "text/plain" ||
		strings.Join(r.resp.Header.Values("Set-Cookie"), "|") != "a=b|c=d" || string(r.body) != "short and stout" {
		t.Errorf("client got %d %v %q", r.resp.StatusCode, r.resp.Header, r.body)
	}
	// A request without a body carries none in the event.
	res = goGet(c, h.URL()+"/")
	d = f.next()
	if d.err != nil || d.event.Body != "" || d.event.IsBase64Encoded || d.event.RawPath != "/" {
		t.Errorf("bodiless event: %+v (err %v)", d.event, d.err)
	}
	f.post("runtime/invocation/"+d.id+"/response", integration, streamed(`{"statusCode":204}`, ""), "")
	f.poll()
	if r := wait(t, res); r.err != nil || r.resp.StatusCode != 204 {
		t.Errorf("second request: %+v", r)
	}
}

func TestRuntimeStreamErrorTrailer(t *testing.T) {
	h := newHarness(t, lambdaharness.Options{})
	f := newFakeRuntime(t, h)
	c := newClient(t)

	res := goGet(c, h.URL()+"/broken")
	d := f.next()
	body := io.MultiReader(streamed(`{"statusCode":200}`, ""), bytes.NewReader(make([]byte, 300<<10)))
	if st := f.post("runtime/invocation/"+d.id+"/response", integration, body, "Runtime.StreamError"); st != http.StatusAccepted {
		t.Errorf("response POST status = %d", st)
	}
	f.poll()
	r := wait(t, res)
	if r.err == nil {
		t.Errorf("client read a response that failed mid-stream as complete: %d, %d bytes", r.resp.StatusCode, len(r.body))
	}

	// The harness is free for the next request.
	res = goGet(c, h.URL()+"/after")
	d = f.next()
	if d.err != nil || d.event.RawPath != "/after" {
		t.Fatalf("next after error: %+v", d)
	}
	f.post("runtime/invocation/"+d.id+"/response", integration, streamed(`{"statusCode":200}`, "fine"), "")
	f.poll()
	if r := wait(t, res); r.err != nil || string(r.body) != "fine" {
		t.Errorf("request after error: %+v", r)
	}
}

func TestRuntimeFunctionError(t *testing.T) {
	h := newHarness(t, lambdaharness.Options{})
	f := newFakeRuntime(t, h)
	c := newClient(t)

	res := goGet(c, h.URL()+"/x")
	d := f.next()
	if st := f.post("runtime/invocation/"+d.id+"/error", "application/json",
		strings.NewReader(`{"errorMessage":"boom","errorType":"errorString"}`), ""); st != http.StatusAccepted {
		t.Errorf("error POST status = %d", st)
	}
	r := wait(t, res)
	if r.err != nil || r.resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(r.body), "boom") {
		t.Errorf("client got %+v %q", r.resp, r.body)
	}
	// A second answer for the same invocation is refused.
	if st := f.post("runtime/invocation/"+d.id+"/response", integration, streamed(`{}`, ""), ""); st != http.StatusBadRequest {
		t.Errorf("duplicate response POST status = %d, want 400", st)
	}
}

func TestRuntimeBufferedResponse(t *testing.T) {
	h := newHarness(t, lambdaharness.Options{})
	f := newFakeRuntime(t, h)
	c := newClient(t)

	res := goGet(c, h.URL()+"/buffered")
	d := f.next()
	f.post("runtime/invocation/"+d.id+"/response", "application/json", strings.NewReader(
		`{"statusCode":201,"headers":{"X-A":"1"},"body":"aGVsbG8=","isBase64Encoded":true,"cookies":["a=b"]}`), "")
	r := wait(t, res)
	if r.err != nil || r.resp.StatusCode != 201 || r.resp.Header.Get("X-A") != "1" ||
		r.resp.Header.Get("Set-Cookie") != "a=b" || string(r.body) != "hello" || r.resp.ContentLength != 5 {
		t.Errorf("client got %+v %q", r.resp, r.body)
	}

	// JSON without a statusCode is returned verbatim.
	res = goGet(c, h.URL()+"/raw")
	d = f.next()
	f.post("runtime/invocation/"+d.id+"/response", "application/json", strings.NewReader(`{"hello":"world"}`), "")
	r = wait(t, res)
	if r.err != nil || r.resp.StatusCode != 200 || r.resp.Header.Get("Content-Type") != "application/json" ||
		string(r.body) != `{"hello":"world"}` {
		t.Errorf("client got %+v %q", r.resp, r.body)
	}
}

func TestRuntimeMalformedPrelude(t *testing.T) {
	h := newHarness(t, lambdaharness.Options{})
	f := newFakeRuntime(t, h)
	c := newClient(t)

	res := goGet(c, h.URL()+"/x")
	d := f.next()
	if st := f.post("runtime/invocation/"+d.id+"/response", integration, strings.NewReader(`{"statusCode":200}no delimiter`), ""); st != http.StatusAccepted {
		t.Errorf("response POST status = %d", st)
	}
	if r := wait(t, res); r.err != nil || r.resp.StatusCode != http.StatusBadGateway {
		t.Errorf("client got %+v", r)
	}
}

func TestRuntimeInitError(t *testing.T) {
	h := newHarness(t, lambdaharness.Options{})
	f := newFakeRuntime(t, h)
	c := newClient(t)

	res := goGet(c, h.URL()+"/queued")
	time.Sleep(50 * time.Millisecond)
	if st := f.post("runtime/init/error", "application/json",
		strings.NewReader(`{"errorMessage":"no config","errorType":"Runtime.InitError"}`), ""); st != http.StatusAccepted {
		t.Errorf("init error POST status = %d", st)
	}
	if r := wait(t, res); r.err != nil || r.resp.StatusCode != http.StatusBadGateway {
		t.Errorf("queued request: %+v", r)
	}
	if r := wait(t, goGet(c, h.URL()+"/later")); r.err != nil || r.resp.StatusCode != http.StatusBadGateway {
		t.Errorf("later request: %+v", r)
	}
	// An asynchronous invocation is accepted, and fails.
	if resp, _ := invokeAPI(t, c, h, "fn", "Event", []byte(`{}`)); resp.StatusCode != http.StatusAccepted {
		t.Errorf("event after init error: status %d", resp.StatusCode)
	}
	results, err := h.WaitAsync(1, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if fe := results[0].Err; fe == nil || fe.Type != "Runtime.InitError" || fe.Message != "no config" {
		t.Errorf("event after init error: %+v (err %+v)", results[0], fe)
	}
}

func TestRuntimeTimeout(t *testing.T) {
	h := newHarness(t, lambdaharness.Options{Timeout: 300 * time.Millisecond})
	f := newFakeRuntime(t, h)
	c := newClient(t)

	// Nobody polls.
	if r := wait(t, goGet(c, h.URL()+"/unpolled")); r.err != nil || r.resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("unpolled request: %+v", r)
	}
	if n := h.Invocations(); n != 0 {
		t.Errorf("Invocations = %d, want 0", n)
	}

	// Delivered, never answered; the late answer is refused.
	res := goGet(c, h.URL()+"/unanswered")
	d := f.next()
	if r := wait(t, res); r.err != nil || r.resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("unanswered request: %+v", r)
	}
	if st := f.post("runtime/invocation/"+d.id+"/response", integration, streamed(`{}`, ""), ""); st != http.StatusBadRequest {
		t.Errorf("late response POST status = %d, want 400", st)
	}

	// A response still streaming at the deadline is cut off.
	res = goGet(c, h.URL()+"/slow")
	d = f.next()
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte(`{"statusCode":200}` + "\x00\x00\x00\x00\x00\x00\x00\x00first"))
		time.Sleep(time.Second)
		pw.CloseWithError(errors.New("too late"))
	}()
	req, _ := http.NewRequest(http.MethodPost, f.base+"runtime/invocation/"+d.id+"/response", pr)
	req.Header.Set("Content-Type", integration)
	if resp, err := f.c.Do(req); err == nil {
		resp.Body.Close()
	}
	if r := wait(t, res); r.err == nil {
		t.Errorf("stream cut by the deadline read as complete: %d %q", r.resp.StatusCode, r.body)
	}
}

func TestRuntimeNextDisconnectKeepsInvocation(t *testing.T) {
	h := newHarness(t, lambdaharness.Options{})
	f := newFakeRuntime(t, h)
	c := newClient(t)

	// Pollers that give up must not swallow the invocation queued after them.
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		if d := f.nextCtx(ctx); d.err == nil {
			t.Fatalf("next returned %+v with nothing queued", d)
		}
		cancel()
	}
	res := goGet(c, h.URL()+"/kept")
	d := f.next()
	if d.event.RawPath != "/kept" {
		t.Fatalf("delivered %q", d.event.RawPath)
	}
	f.post("runtime/invocation/"+d.id+"/response", integration, streamed(`{"statusCode":200}`, "ok"), "")
	f.poll()
	if r := wait(t, res); r.err != nil || string(r.body) != "ok" {
		t.Errorf("client got %+v", r)
	}
	if n := h.Invocations(); n != 1 {
		t.Errorf("Invocations = %d, want 1", n)
	}
}

func TestRuntimeClientGivesUp(t *testing.T) {
	h := newHarness(t, lambdaharness.Options{})
	f := newFakeRuntime(t, h)
	c := newClient(t)

	// Gives up while queued: the invocation is dropped.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.URL()+"/impatient", nil)
	if r := wait(t, goDo(c, req)); r.err == nil {
		t.Fatalf("impatient request got %+v", r)
	}
	cancel()
	// The client's error comes before the harness sees the connection
	// close; wait (bounded) for the harness to drop the invocation.
	for deadline := time.Now().Add(10 * time.Second); h.Queued() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("abandoned invocation still queued after 10s")
		}
	}
	res := goGet(c, h.URL()+"/patient")
	d := f.next()
	if d.event.RawPath != "/patient" {
		t.Fatalf("delivered %q, want /patient", d.event.RawPath)
	}
	f.post("runtime/invocation/"+d.id+"/response", integration, streamed(`{"statusCode":200}`, "ok"), "")
	f.poll()
	if r := wait(t, res); r.err != nil || string(r.body) != "ok" {
		t.Errorf("patient request: %+v", r)
	}

	// Gives up after delivery: the runtime's answer is still accepted and
	// the harness moves on.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, h.URL()+"/leaves", nil)
	res = goDo(c, req)
	d = f.next()
	cancel()
	wait(t, res)
	if st := f.post("runtime/invocation/"+d.id+"/response", integration,
		io.MultiReader(streamed(`{"statusCode":200}`, ""), bytes.NewReader(make([]byte, 1<<20))), ""); st != http.StatusAccepted {
		t.Errorf("response for abandoned request: status %d", st)
	}
	f.poll()
	res = goGet(c, h.URL()+"/third")
	d = f.next()
	if d.err != nil || d.event.RawPath != "/third" {
		t.Fatalf("delivered %+v", d)
	}
	f.post("runtime/invocation/"+d.id+"/response", integration, streamed(`{"statusCode":200}`, "3"), "")
	f.poll()
	if r := wait(t, res); r.err != nil || string(r.body) != "3" {
		t.Errorf("third request: %+v", r)
	}
}
