package lambdaharness_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/lambdaharness"
)

// echoBinary is the path of the testdata/echo bootstrap, built by TestMain.
var (
	echoBinary   string
	echoBuildErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lambdaharness-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	echoBinary, echoBuildErr = buildEcho(dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildEcho builds testdata/echo the way Lambda bootstraps are built.
func buildEcho(dir string) (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("go tool not found: %w", err)
	}
	out := filepath.Join(dir, "bootstrap")
	cmd := exec.Command(goTool, "build", "-tags", "lambda.norpc", "-o", out, "./testdata/echo")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building testdata/echo: %v\n%s", err, b)
	}
	return out, nil
}

// syncBuffer collects a subprocess's output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testLogger sends harness logs to the test log while the test runs.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func newHarness(t *testing.T, opts lambdaharness.Options) *lambdaharness.Harness {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	h, err := lambdaharness.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

type process struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
	err    error // valid once exited is closed
}

// startEcho runs the echo bootstrap against h with a minimal Lambda-like
// environment. The process is killed when the test ends.
func startEcho(t *testing.T, h *lambdaharness.Harness, extraEnv ...string) *process {
	t.Helper()
	if echoBuildErr != nil {
		t.Skip(echoBuildErr)
	}
	p := &process{out: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(echoBinary)
	p.cmd.Env = append([]string{
		"AWS_LAMBDA_RUNTIME_API=" + h.RuntimeAPI(),
		"AWS_ENDPOINT_URL_LAMBDA=" + h.InvokeEndpoint(),
		"AWS_LAMBDA_FUNCTION_NAME=echo",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128",
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_REGION=us-east-1",
		"TZ=UTC",
	}, extraEnv...)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("bootstrap output:\n%s", p.out.String())
		}
	})
	return p
}

// echoModes are the two ways testdata/echo can serve function URLs: its
// default main, a dispatcher (lambda.StartHandlerFunc with a json.RawMessage
// handler that returns lambdaurl.Wrap's streaming response as an `any`), and
// plain lambdaurl.Start. Tests run through forEachMode check both alike.
var echoModes = []struct {
	name string
	env  []string
}{
	{"dispatch", nil},
	{"plain", []string{"ECHO_PLAIN=1"}},
}

func forEachMode(t *testing.T, f func(t *testing.T, env []string)) {
	for _, m := range echoModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			f(t, m.env)
		})
	}
}

func newClient(t *testing.T) *http.Client {
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 2 * time.Minute}
}

// bigBody returns what /big?size=size&seed=seed serves.
func bigBody(size int, seed uint64) []byte {
	var key [32]byte
	key[0] = byte(seed)
	key[1] = byte(seed >> 8)
	b := make([]byte, size)
	rand.NewChaCha8(key).Read(b)
	return b
}

type echoed struct {
	Method     string              `json:"method"`
	Path       string              `json:"path"`
	RawPath    string              `json:"rawPath"`
	RawQuery   string              `json:"rawQuery"`
	Host       string              `json:"host"`
	Header     string              `json:"header"`
	Headers    map[string][]string `json:"headers"`
	Body       []byte              `json:"body"`
	RemoteAddr string              `json:"remoteAddr"`
}

func doEcho(t *testing.T, c *http.Client, method, url string, body io.Reader, hdr map[string]string) (*http.Response, echoed) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e echoed
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &e); err != nil {
		t.Fatalf("decoding %q: %v", data, err)
	}
	return resp, e
}

func TestEcho(t *testing.T) { forEachMode(t, testEcho) }

func testEcho(t *testing.T, env []string) {
	h := newHarness(t, lambdaharness.Options{})
	startEcho(t, h, env...)
	c := newClient(t)

	resp, e := doEcho(t, c, http.MethodGet, h.URL()+"/v2/library/a%2Fb/manifests/sha256:abc?n=1&last=x%20y&n=2",
		nil, map[string]string{"X-Test": "hello", "Accept": "application/json"})
	if resp.StatusCode != 299 {
		t.Errorf("status = %d, want 299", resp.StatusCode)
	}
	if got := resp.Header.Get("X-Echo-Method"); got != "GET" {
		t.Errorf("X-Echo-Method = %q", got)
	}
	if got := resp.Header.Get("X-Multi"); got != "a,b" { // lambdaurl joins values
		t.Errorf("X-Multi = %q, want a,b", got)
	}
	if got := resp.Header.Values("Set-Cookie"); len(got) != 2 || got[0] != "c1=v1" || got[1] != "c2=v2" {
		t.Errorf("Set-Cookie = %q", got)
	}
	if got := resp.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q", got)
	}
	want := echoed{
		Method:   "GET",
		Path:     "/v2/library/a/b/manifests/sha256:abc",
		RawPath:  "/v2/library/a%2Fb/manifests/sha256:abc",
		RawQuery: "n=1&last=x%20y&n=2",
		Host:     strings.TrimPrefix(h.URL(), "http://"),
		Header:   "hello",
	}
	if e.Method != want.Method || e.Path != want.Path || e.RawPath != want.RawPath ||
		e.RawQuery != want.RawQuery || e.Host != want.Host || e.Header != want.Header {
		t.Errorf("echo = %+v\nwant  %+v", e, want)
	}
	if !strings.HasPrefix(e.RemoteAddr, "127.0.0.1") {
		t.Errorf("remoteAddr = %q", e.RemoteAddr)
	}
	if got := e.Headers["Accept"]; len(got) != 1 || got[0] != "application/json" {
		t.Errorf("Accept header seen by function = %q", got)
	}

	// A request body travels base64-encoded and arrives intact.
	payload := "binary\x00\xff body"
	resp, e = doEcho(t, c, http.MethodPost, h.URL()+"/upload", strings.NewReader(payload), nil)
	if resp.StatusCode != 299 || e.Method != "POST" || string(e.Body) != payload {
		t.Errorf("POST: status %d, echo %+v", resp.StatusCode, e)
	}

	if got := h.Invocations(); got != 2 {
		t.Errorf("Invocations = %d, want 2", got)
	}
}

func TestBigBodyAndHead(t *testing.T) { forEachMode(t, testBigBodyAndHead) }

// In Permissive mode the function's Content-Length reaches the client; see
// TestFaithfulStreamedLength for what AWS does instead.
func testBigBodyAndHead(t *testing.T, env []string) {
	h := newHarness(t, lambdaharness.Options{Mode: lambdaharness.Permissive})
	startEcho(t, h, env...)
	c := newClient(t)

	const size = 20 << 20
	url := h.URL() + "/big?size=" + strconv.Itoa(size) + "&seed=7"
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.New()
	n, err := io.Copy(sum, resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading body after %d bytes: %v", n, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status = %d", resp.StatusCode)
	}
	if resp.ContentLength != size {
		t.Errorf("ContentLength = %d, want %d", resp.ContentLength, size)
	}
	if got := resp.Header.Get("X-Seed"); got != "7" {
		t.Errorf("X-Seed = %q", got)
	}
	if want := sha256.Sum256(bigBody(size, 7)); !bytes.Equal(sum.Sum(nil), want[:]) {
		t.Errorf("body (%d bytes) differs from the %d bytes served", n, size)
	}

	req, _ := http.NewRequest(http.MethodHead, url, nil)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength != size || len(body) != 0 {
		t.Errorf("HEAD: status %d, ContentLength %d, %d body bytes", resp.StatusCode, resp.ContentLength, len(body))
	}
	if got := resp.Header.Get("Content-Length"); got != strconv.Itoa(size) {
		t.Errorf("HEAD Content-Length header = %q", got)
	}
}

// TestStreaming checks that the body reaches the client as the function
// writes it rather than after the function finished.
func TestStreaming(t *testing.T) { forEachMode(t, testStreaming) }

func testStreaming(t *testing.T, env []string) {
	h := newHarness(t, lambdaharness.Options{})
	startEcho(t, h, env...)
	c := newClient(t)

	start := time.Now()
	resp, err := c.Get(h.URL() + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	tFirst := time.Since(start)
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	tAll := time.Since(start)
	if first != "first\n" || string(rest) != "second\n" {
		t.Errorf("body = %q + %q", first, rest)
	}
	if tAll-tFirst < 500*time.Millisecond {
		t.Errorf("first line after %v, whole body after %v: not streamed", tFirst, tAll)
	}
	// lambdaurl sniffs no Content-Type and the harness must not invent one.
	if got, ok := resp.Header["Content-Type"]; ok {
		t.Errorf("Content-Type = %q, want none", got)
	}
}

func TestSequentialAndConcurrent(t *testing.T) {
	h := newHarness(t, lambdaharness.Options{})
	// Four runtime loops poll for work at once; the harness must still hand
	// out one invocation at a time.
	startEcho(t, h, "AWS_LAMBDA_MAX_CONCURRENCY=4")
	c := newClient(t)

	for i := range 5 {
		resp, e := doEcho(t, c, http.MethodGet, fmt.Sprintf("%s/seq/%d?i=%d", h.URL(), i, i), nil, nil)
		if resp.StatusCode != 299 || e.Path != fmt.Sprintf("/seq/%d", i) || e.RawQuery != fmt.Sprintf("i=%d", i) {
			t.Errorf("request %d: status %d, echo %+v", i, resp.StatusCode, e)
		}
	}

	const parallel = 8
	const size = 3<<20 + 123
	var wg sync.WaitGroup
	errs := make(chan error, parallel)
	for i := range parallel {
		wg.Go(func() {
			seed := uint64(100 + i)
			resp, err := c.Get(fmt.Sprintf("%s/big?size=%d&seed=%d&chunk=%d", h.URL(), size, seed, 1000+i*4099))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			switch {
			case err != nil:
				errs <- fmt.Errorf("seed %d: %v", seed, err)
			case resp.StatusCode != http.StatusOK:
				errs <- fmt.Errorf("seed %d: status %d", seed, resp.StatusCode)
			case !bytes.Equal(got, bigBody(size, seed)):
				errs <- fmt.Errorf("seed %d: wrong body (%d bytes)", seed, len(got))
			case resp.Header.Get("X-Max-Active") != "1":
				errs <- fmt.Errorf("seed %d: %s handlers ran at once", seed, resp.Header.Get("X-Max-Active"))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := h.Invocations(); got != 5+parallel {
		t.Errorf("Invocations = %d, want %d", got, 5+parallel)
	}
}

func TestContext(t *testing.T) {
	const timeout = 90 * time.Second
	h := newHarness(t, lambdaharness.Options{Timeout: timeout})
	startEcho(t, h)
	c := newClient(t)

	before := time.Now()
	resp, err := c.Get(h.URL() + "/context")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		RequestID   string `json:"requestId"`
		FunctionArn string `json:"functionArn"`
		DeadlineMs  int64  `json:"deadlineMs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if len(got.RequestID) != 36 {
		t.Errorf("request ID = %q", got.RequestID)
	}
	if got.FunctionArn != lambdaharness.FunctionARN {
		t.Errorf("function ARN = %q", got.FunctionArn)
	}
	deadline := time.UnixMilli(got.DeadlineMs)
	if deadline.Before(before.Add(timeout-time.Second)) || deadline.After(time.Now().Add(timeout)) {
		t.Errorf("deadline %v is not about %v from %v", deadline, timeout, before)
	}
}

// TestPanicMidStream checks that a function that dies while streaming does
// not look like a complete response to the client.
func TestPanicMidStream(t *testing.T) { forEachMode(t, testPanicMidStream) }

func testPanicMidStream(t *testing.T, env []string) {
	h := newHarness(t, lambdaharness.Options{})
	p := startEcho(t, h, env...)
	c := newClient(t)

	resp, err := c.Get(h.URL() + "/panic")
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Errorf("the response of a panicking function read as complete")
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("bootstrap did not exit after its panic")
	}
}

func TestClose(t *testing.T) {
	baseline := runtime.NumGoroutine()
	h, err := lambdaharness.New(lambdaharness.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	p := startEcho(t, h)
	c := newClient(t)
	resp, _ := doEcho(t, c, http.MethodGet, h.URL()+"/before-close", nil, nil)
	if resp.StatusCode != 299 {
		t.Fatalf("status = %d", resp.StatusCode)
	}

	// A request that is still waiting when the harness closes is answered.
	h2, err := lambdaharness.New(lambdaharness.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan error, 1)
	go func() {
		resp, err := c.Get(h2.URL() + "/nobody-polls")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		waiting <- err
	}()
	// So are an asynchronous invocation that nobody takes, and a test
	// waiting for it.
	if resp, _ := invokeAPI(t, c, h2, "fn", "Event", []byte(`{"never":"run"}`)); resp.StatusCode != http.StatusAccepted {
		t.Errorf("event: status %d", resp.StatusCode)
	}
	waitAsync := make(chan error, 1)
	go func() {
		_, err := h2.WaitAsync(1, time.Minute)
		waitAsync <- err
	}()
	time.Sleep(100 * time.Millisecond)

	closed := make(chan error, 1)
	go func() { closed <- errors.Join(h.Close(), h2.Close()) }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	if err := h.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	select {
	case err := <-waiting:
		t.Logf("request waiting during Close: %v", err)
	case <-time.After(10 * time.Second):
		t.Error("request waiting during Close was not answered")
	}
	select {
	case err := <-waitAsync:
		if err == nil {
			t.Error("WaitAsync for an event that never ran succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Error("WaitAsync did not return after Close")
	}

	// The runtime's long poll fails, and aws-lambda-go exits the process.
	select {
	case <-p.exited:
		if !strings.Contains(p.out.String(), "next invoke") {
			t.Logf("bootstrap output:\n%s", p.out.String())
		}
	case <-time.After(10 * time.Second):
		t.Error("bootstrap still running after Close")
	}
	if _, err := c.Get(h.URL() + "/after-close"); err == nil {
		t.Error("function URL still answers after Close")
	}
	c.Transport.(*http.Transport).CloseIdleConnections()

	// Nothing of the harness is left running.
	var n int
	for range 100 {
		if n = runtime.NumGoroutine(); n <= baseline {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n > baseline {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after Close, %d before:\n%s", n, baseline, buf[:runtime.Stack(buf, true)])
	}
}
