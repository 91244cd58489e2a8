// Package lambdaharness is test support, not product code: it lets tests run a
// real AWS Lambda "bootstrap" binary on the local machine and talk to it over
// plain HTTP, as if it were deployed behind a Lambda function URL.
//
// A Harness plays three roles:
//
//   - the Lambda Runtime API (AWS_LAMBDA_RUNTIME_API), which a bootstrap built
//     with aws-lambda-go (for example one whose main calls lambdaurl.Start)
//     polls for invocations and posts its responses to;
//   - a Lambda function URL configured with InvokeMode RESPONSE_STREAM, which
//     turns every incoming HTTP request into a payload-version-2.0 event,
//     invokes the function with it, and streams the function's
//     "application/vnd.awslambda.http-integration-response" back to the client;
//     and
//   - the Lambda Invoke API (AWS_ENDPOINT_URL_LAMBDA, see InvokeEndpoint), so
//     that the function can invoke itself, typically asynchronously
//     (X-Amz-Invocation-Type: Event); tests wait for the outcome of such
//     invocations with WaitAsync.
//
// Typical use from a test:
//
//	h, err := lambdaharness.New(lambdaharness.Options{})
//	...
//	defer h.Close()
//	cmd := exec.Command(bootstrapPath)
//	cmd.Env = []string{"AWS_LAMBDA_RUNTIME_API=" + h.RuntimeAPI(), ...}
//	cmd.Start()
//	resp, err := http.Get(h.URL() + "/v2/")
//
// Like Lambda with Options.Concurrency execution environments (default one),
// the harness keeps at most that many invocations in flight; further function
// URL requests and Invoke API calls wait their turn (AWS would throttle them
// instead). Each runtime process, or each runtime loop of a process started
// with AWS_LAMBDA_MAX_CONCURRENCY, takes invocations from the shared queue, so
// to run N invocations at once start N runtime loops against RuntimeAPI() and
// set Concurrency to N. The harness does not manage the bootstrap processes:
// closing the harness makes each runtime's next call to the Runtime API fail,
// and aws-lambda-go then exits the process.
//
// By default (Options.Mode Faithful) the function URL treats streamed
// responses as AWS does, warts included: the function's Content-Length
// reaches the client as X-Amzn-Remapped-Content-Length and the body is
// chunked (so a HEAD answer has no length), a body is throttled to 2 MB/s
// after its first 6 MB, and cut off past 200 MB. Permissive mode passes
// lengths through and streams anything at full speed. In both, request
// bodies over 6 MB get 413 and multi-value request headers reach the
// function joined with commas, as on AWS.
//
// Deliberate departures from AWS: the front end speaks plain HTTP, so the
// event's x-forwarded-proto and x-forwarded-port headers describe the harness
// (http and its port), not https/443; there is no authentication (SigV4
// signatures are not checked), throttling or extensions API; failed
// asynchronous invocations are not retried and there are no destinations or
// dead-letter queues; and an invocation that times out is answered with 504
// (or a Sandbox.Timedout function error) but the process is left alone (AWS
// would reset the execution environment; here the runtime's late response is
// refused, which makes aws-lambda-go exit).
package lambdaharness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultTimeout is the invocation timeout used when Options.Timeout is zero.
// It matches the longest timeout AWS Lambda allows ("Function timeout: 900
// seconds (15 minutes)",
// https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
const DefaultTimeout = 15 * time.Minute

// Options configures a Harness.
type Options struct {
	// Timeout is the per-invocation deadline, counted from the moment the
	// invocation is queued (which, with an idle runtime, is also the moment it
	// is delivered). It is announced to the function in
	// Lambda-Runtime-Deadline-Ms. A request that gets no response headers in
	// time is answered with 504; a response still streaming at the deadline is
	// cut off. Zero means DefaultTimeout.
	Timeout time.Duration

	// Logger receives diagnostics (function errors, malformed responses,
	// timeouts at Warn; per-request details at Debug). Nil discards them.
	Logger *slog.Logger

	// Concurrency is the number of execution environments: at most this many
	// invocations (function URL requests and Invoke API calls together) are
	// queued or running at once. It should match the number of runtime loops
	// polling RuntimeAPI(); an invocation that finds no idle runtime waits in
	// the queue, and its timeout runs. Zero means 1.
	Concurrency int

	// FunctionName, if set, is the only function the Invoke API accepts (as a
	// name, partial ARN or ARN, with or without a qualifier; others get 404
	// ResourceNotFoundException), and it replaces "lambdaharness" in the
	// function ARN announced to the runtime. Empty accepts any name.
	FunctionName string

	// Mode is Faithful (the default) or Permissive; see Mode.
	Mode Mode

	// StreamSpeedup multiplies the 2 MB/s rate at which Faithful mode
	// streams a response body past its first 6 MB, so that tests stay fast
	// while a design that streams large bodies through the function still
	// shows up as slow. Zero means 1, AWS's rate.
	StreamSpeedup float64

	// MaxResponseSize caps a streamed response body in Faithful mode; the
	// client's connection is cut after that many bytes. Zero means
	// DefaultMaxResponseSize.
	MaxResponseSize int64
}

// Harness is a local stand-in for the Lambda Runtime API and a function URL in
// front of it. Create one with New and release it with Close.
type Harness struct {
	timeout      time.Duration
	log          *slog.Logger
	functionName string // Options.FunctionName
	functionARN  string
	mode         Mode
	speedup      float64 // Options.StreamSpeedup
	maxResponse  int64   // Options.MaxResponseSize

	runtimeLn  net.Listener
	frontLn    net.Listener
	invokeLn   net.Listener
	runtimeSrv *http.Server
	frontSrv   *http.Server
	invokeSrv  *http.Server
	conns      sync.Map // net.Conn -> *connInfo, for Runtime API connections

	slot      chan struct{} // capacity Options.Concurrency: execution environments
	done      chan struct{} // closed by Close
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
	delivered atomic.Int64
	asyncN    atomic.Int64 // Event invocations accepted

	mu       sync.Mutex
	closed   bool
	queue    []*invocation          // queued, not yet delivered
	inflight map[string]*invocation // queued or delivered, not finished
	changed  chan struct{}          // closed and replaced when queue or nextCalls changes
	// nextCalls counts GET .../invocation/next requests received.
	nextCalls uint64
	initErr   *FunctionError // set by POST /runtime/init/error
	// asyncResults holds the outcome of every finished Event invocation, in
	// the order they finished.
	asyncResults []AsyncResult
}

// New starts a Harness listening on three ephemeral ports on 127.0.0.1: one
// for the Runtime API, one for the function URL and one for the Invoke API.
func New(opts Options) (*Harness, error) {
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("lambdaharness: negative timeout %v", opts.Timeout)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Concurrency < 0 {
		return nil, fmt.Errorf("lambdaharness: negative concurrency %d", opts.Concurrency)
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = 1
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Mode != Faithful && opts.Mode != Permissive {
		return nil, fmt.Errorf("lambdaharness: unknown mode %v", opts.Mode)
	}
	if opts.StreamSpeedup < 0 || opts.MaxResponseSize < 0 {
		return nil, fmt.Errorf("lambdaharness: negative stream speedup %v or response size %d", opts.StreamSpeedup, opts.MaxResponseSize)
	}
	if opts.StreamSpeedup == 0 {
		opts.StreamSpeedup = 1
	}
	if opts.MaxResponseSize == 0 {
		opts.MaxResponseSize = DefaultMaxResponseSize
	}
	h := &Harness{
		mode:         opts.Mode,
		speedup:      opts.StreamSpeedup,
		maxResponse:  opts.MaxResponseSize,
		timeout:      opts.Timeout,
		log:          opts.Logger,
		functionName: opts.FunctionName,
		functionARN:  FunctionARN,
		slot:         make(chan struct{}, opts.Concurrency),
		done:         make(chan struct{}),
		inflight:     make(map[string]*invocation),
		changed:      make(chan struct{}),
	}
	if opts.FunctionName != "" {
		h.functionARN = functionARNPrefix + opts.FunctionName
	}

	var err error
	if h.runtimeLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("lambdaharness: listen for runtime API: %w", err)
	}
	if h.frontLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		h.runtimeLn.Close()
		return nil, fmt.Errorf("lambdaharness: listen for function URL: %w", err)
	}
	if h.invokeLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		h.runtimeLn.Close()
		h.frontLn.Close()
		return nil, fmt.Errorf("lambdaharness: listen for invoke API: %w", err)
	}

	errLog := slog.NewLogLogger(h.log.Handler(), slog.LevelDebug)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", h.tracked(h.serveNext))
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", h.tracked(h.serveResponse))
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", h.tracked(h.serveError))
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", h.tracked(h.serveInitError))
	mux.HandleFunc("/", h.tracked(func(w http.ResponseWriter, r *http.Request) {
		h.log.Debug("lambdaharness: unsupported runtime API call", "method", r.Method, "path", r.URL.Path)
		runtimeError(w, http.StatusNotFound, "UnsupportedRequest", "lambdaharness does not implement "+r.Method+" "+r.URL.Path)
	}))
	h.runtimeSrv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          errLog,
		ConnContext:       h.connContext,
		ConnState:         h.connState,
	}
	h.frontSrv = &http.Server{
		Handler:           h.tracked(h.serveFront),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          errLog,
	}
	invokeMux := http.NewServeMux()
	invokeMux.HandleFunc("POST /2015-03-31/functions/{FunctionName}/invocations", h.tracked(h.serveInvoke))
	invokeMux.HandleFunc("/", h.tracked(func(w http.ResponseWriter, r *http.Request) {
		h.log.Debug("lambdaharness: unsupported Lambda API call", "method", r.Method, "path", r.URL.Path)
		lambdaAPIError(w, http.StatusNotFound, "UnknownOperationException", "lambdaharness implements only Invoke, not "+r.Method+" "+r.URL.Path)
	}))
	h.invokeSrv = &http.Server{
		Handler:           invokeMux,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          errLog,
	}

	h.wg.Add(3)
	go func() {
		defer h.wg.Done()
		h.serve(h.runtimeSrv, h.runtimeLn, "runtime API")
	}()
	go func() {
		defer h.wg.Done()
		h.serve(h.frontSrv, h.frontLn, "function URL")
	}()
	go func() {
		defer h.wg.Done()
		h.serve(h.invokeSrv, h.invokeLn, "invoke API")
	}()
	return h, nil
}

func (h *Harness) serve(srv *http.Server, ln net.Listener, what string) {
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		h.log.Error("lambdaharness: server stopped", "server", what, "err", err)
	}
}

// RuntimeAPI returns the host:port of the Runtime API, the value for the
// function's AWS_LAMBDA_RUNTIME_API environment variable.
func (h *Harness) RuntimeAPI() string { return h.runtimeLn.Addr().String() }

// URL returns the base URL of the function URL front end, "http://host:port",
// without a trailing slash.
func (h *Harness) URL() string { return "http://" + h.frontLn.Addr().String() }

// InvokeEndpoint returns the base URL of the Lambda Invoke API,
// "http://host:port", the value for the function's AWS_ENDPOINT_URL_LAMBDA
// environment variable (read by aws-sdk-go-v2's config.LoadDefaultConfig).
func (h *Harness) InvokeEndpoint() string { return "http://" + h.invokeLn.Addr().String() }

// InvokedFunctionARN returns the function ARN announced to the runtime in
// Lambda-Runtime-Invoked-Function-Arn (see Options.FunctionName).
func (h *Harness) InvokedFunctionARN() string { return h.functionARN }

// Invocations returns how many invocations, of any kind, have been delivered
// to the runtime.
func (h *Harness) Invocations() int64 { return h.delivered.Load() }

// Queued returns how many invocations wait for the runtime to take them.
func (h *Harness) Queued() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.queue)
}

// Close stops the servers, fails any waiting requests, drops asynchronous
// invocations that have not finished, and waits for all of the harness's
// goroutines to finish. It is safe to call more than once.
func (h *Harness) Close() error {
	h.closeOnce.Do(func() {
		h.mu.Lock()
		h.closed = true
		h.mu.Unlock()
		close(h.done)
		h.closeErr = errors.Join(h.frontSrv.Close(), h.invokeSrv.Close(), h.runtimeSrv.Close())
		// Every handler wakes on h.done or on its connection being closed.
		h.wg.Wait()
	})
	return h.closeErr
}

// tracked wraps a handler so that Close waits for it to return.
func (h *Harness) tracked(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			w.Header().Set("Connection", "close")
			http.Error(w, "lambdaharness: closed", http.StatusServiceUnavailable)
			return
		}
		h.wg.Add(1)
		h.mu.Unlock()
		defer h.wg.Done()
		f(w, r)
	}
}

// connInfo tracks one Runtime API connection, so the front end can notice the
// function process dying right after it finished a response stream.
type connInfo struct {
	closed chan struct{}
	once   sync.Once
}

type connInfoKey struct{}

func (h *Harness) connContext(ctx context.Context, c net.Conn) context.Context {
	ci := &connInfo{closed: make(chan struct{})}
	h.conns.Store(c, ci)
	return context.WithValue(ctx, connInfoKey{}, ci)
}

func (h *Harness) connState(c net.Conn, s http.ConnState) {
	if s != http.StateClosed && s != http.StateHijacked {
		return
	}
	if v, ok := h.conns.LoadAndDelete(c); ok {
		ci := v.(*connInfo)
		ci.once.Do(func() { close(ci.closed) })
	}
}

// notifyLocked wakes everything waiting for the queue or nextCalls to change.
// h.mu must be held.
func (h *Harness) notifyLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// newID returns a random UUID-shaped request ID.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	s := hex.EncodeToString(b[:])
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
}

// newTraceID returns an X-Ray style trace header value.
func newTraceID(now time.Time) string {
	var b [12]byte
	rand.Read(b[:])
	return fmt.Sprintf("Root=1-%08x-%s;Sampled=0", now.Unix(), hex.EncodeToString(b[:]))
}
