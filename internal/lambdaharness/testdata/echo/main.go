// Command echo is a tiny Lambda function used by the lambdaharness tests. It
// serves HTTP through lambdaurl.Start, so it must run under a Lambda Runtime
// API (AWS_LAMBDA_RUNTIME_API).
//
// Routes:
//
//	/big?size=N&seed=S&chunk=C  N deterministic bytes (ChaCha8 seeded with S),
//	                            written C bytes at a time; HEAD answers with
//	                            Content-Length only
//	/slow                       "first\n", a one second pause, "second\n"
//	/panic                      some bytes, then a panic (kills the process)
//	/context                    Lambda context details as JSON
//	anything else               echoes the request as JSON, with status 299
package main

import (
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-lambda-go/lambdaurl"
)

// active counts handlers running at once; the harness must keep it at 1.
var active, maxActive atomic.Int32

func main() {
	lambdaurl.Start(http.HandlerFunc(serve))
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
