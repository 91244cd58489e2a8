// Command echo is a tiny Lambda function used by the lambdaharness tests. It
// must run under a Lambda Runtime API (AWS_LAMBDA_RUNTIME_API).
//
// By default its main dispatches on the event: an event with an "echoAsync"
// member is a direct (Invoke API) event, anything else is a function URL
// event served by lambdaurl.Wrap, whose streaming response is returned as an
// `any`. With ECHO_PLAIN=1 it calls lambdaurl.Start instead, to check that
// both ways serve function URLs alike.
//
// Function URL routes (every one honours ?sleep=DURATION before answering,
// and sets X-Pid and X-Max-Active):
//
//	/big?size=N&seed=S&chunk=C  N deterministic bytes (ChaCha8 seeded with S),
//	                            written C bytes at a time; HEAD answers with
//	                            Content-Length only
//	/slow                       "first\n", a one second pause, "second\n"
//	/panic                      some bytes, then a panic (kills the process)
//	/context                    Lambda context details as JSON
//	/invoke-self?msg=M&type=T   invokes this function through the Invoke API
//	                            at AWS_ENDPOINT_URL_LAMBDA with the event
//	                            {"echoAsync":M} and invocation type T (default
//	                            Event), the way aws-sdk-go-v2 does; answers
//	                            with the API's status, request ID and body
//	anything else               echoes the request as JSON, with status 299
//
// Direct events: {"echoAsync":M, "sleep":D, "fail":F, "stream":B} sleeps for
// D, then fails with error message F if F is set; otherwise it answers
// {"echoed":M,"requestId":...,"pid":...}, streamed as an io.Reader if B.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-lambda-go/lambdaurl"
)

// active counts handlers running at once in this process.
var active, maxActive atomic.Int32

var handler = lambdaurl.Wrap(http.HandlerFunc(serve))

func main() {
	if os.Getenv("ECHO_PLAIN") == "1" {
		lambdaurl.Start(http.HandlerFunc(serve))
		return
	}
	lambda.StartHandlerFunc(dispatch)
}

// directEvent is the event of a direct (Invoke API) invocation.
type directEvent struct {
	EchoAsync *string `json:"echoAsync"`
	Sleep     string  `json:"sleep"`
	Fail      string  `json:"fail"`
	Stream    bool    `json:"stream"`
}

// dispatch serves both kinds of events. aws-lambda-go streams a returned
// value that is an io.Reader which does not marshal to JSON, such as the
// *events.LambdaFunctionURLStreamingResponse of lambdaurl.Wrap.
func dispatch(ctx context.Context, raw json.RawMessage) (any, error) {
	var ev directEvent
	if json.Unmarshal(raw, &ev) == nil && ev.EchoAsync != nil {
		return direct(ctx, &ev)
	}
	var req events.LambdaFunctionURLRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, err
	}
	resp, err := handler(ctx, &req)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func direct(ctx context.Context, ev *directEvent) (any, error) {
	if d, err := time.ParseDuration(ev.Sleep); err == nil {
		time.Sleep(d)
	}
	if ev.Fail != "" {
		return nil, errors.New(ev.Fail)
	}
	lc, _ := lambdacontext.FromContext(ctx)
	out := map[string]any{"echoed": *ev.EchoAsync, "requestId": lc.AwsRequestID, "pid": os.Getpid()}
	if ev.Stream {
		b, _ := json.Marshal(out)
		return io.MultiReader(bytes.NewReader(b)), nil
	}
	return out, nil
}

func serve(w http.ResponseWriter, r *http.Request) {
	n := active.Add(1)
	defer active.Add(-1)
	for {
		m := maxActive.Load()
		if n <= m || maxActive.CompareAndSwap(m, n) {
			break
		}
	}
	w.Header().Set("X-Max-Active", strconv.Itoa(int(maxActive.Load())))
	w.Header().Set("X-Pid", strconv.Itoa(os.Getpid()))
	if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
		time.Sleep(d)
	}

	switch r.URL.Path {
	case "/big":
		big(w, r)
	case "/slow":
		io.WriteString(w, "first\n")
		time.Sleep(time.Second)
		io.WriteString(w, "second\n")
	case "/panic":
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(make([]byte, 1<<20))
		panic("echo: deliberate panic")
	case "/context":
		writeContext(w, r.Context())
	case "/invoke-self":
		invokeSelf(w, r)
	default:
		echo(w, r)
	}
}

func big(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	size, _ := strconv.Atoi(q.Get("size"))
	seed, _ := strconv.ParseUint(q.Get("seed"), 10, 64)
	chunk, _ := strconv.Atoi(q.Get("chunk"))
	if chunk <= 0 {
		chunk = 65536 + 7
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(size))
	w.Header().Set("X-Seed", strconv.FormatUint(seed, 10))
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	var key [32]byte
	key[0] = byte(seed)
	key[1] = byte(seed >> 8)
	src := rand.NewChaCha8(key)
	buf := make([]byte, chunk)
	for size > 0 {
		b := buf[:min(size, len(buf))]
		src.Read(b)
		if _, err := w.Write(b); err != nil {
			return
		}
		size -= len(b)
	}
}

func echo(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Echo-Method", r.Method)
	w.Header().Add("X-Multi", "a")
	w.Header().Add("X-Multi", "b")
	http.SetCookie(w, &http.Cookie{Name: "c1", Value: "v1"})
	http.SetCookie(w, &http.Cookie{Name: "c2", Value: "v2"})
	w.WriteHeader(299)
	json.NewEncoder(w).Encode(map[string]any{
		"method":     r.Method,
		"path":       r.URL.Path,
		"rawPath":    r.URL.EscapedPath(),
		"rawQuery":   r.URL.RawQuery,
		"host":       r.Host,
		"header":     r.Header.Get("X-Test"),
		"headers":    r.Header,
		"body":       body,
		"remoteAddr": r.RemoteAddr,
	})
}

func writeContext(w http.ResponseWriter, ctx context.Context) {
	lc, _ := lambdacontext.FromContext(ctx)
	deadline, _ := ctx.Deadline()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"requestId":   lc.AwsRequestID,
		"functionArn": lc.InvokedFunctionArn,
		"deadlineMs":  deadline.UnixMilli(),
	})
}

// invokeSelf calls the Invoke API the way aws-sdk-go-v2's lambda Client.Invoke
// does (same method, path escaping and headers; the signature is a dummy).
func invokeSelf(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	typ := q.Get("type")
	if typ == "" {
		typ = "Event"
	}
	payload, _ := json.Marshal(map[string]string{"echoAsync": q.Get("msg")})
	lc, _ := lambdacontext.FromContext(r.Context())
	target := os.Getenv("AWS_ENDPOINT_URL_LAMBDA") + "/2015-03-31/functions/" +
		url.PathEscape(lc.InvokedFunctionArn) + "/invocations"
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, target, bytes.NewReader(payload))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("X-Amz-Invocation-Type", typ)
	req.Header.Set("X-Amz-Date", time.Now().UTC().Format("20060102T150405Z"))
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/lambda/aws4_request, "+
		"SignedHeaders=content-length;content-type;host;x-amz-date;x-amz-invocation-type, Signature=0000")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"status":        resp.StatusCode,
		"requestId":     resp.Header.Get("X-Amzn-Requestid"),
		"functionError": resp.Header.Get("X-Amz-Function-Error"),
		"body":          string(body),
	})
}
