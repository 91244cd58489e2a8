package main

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/lambdaharness"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// Issue 11 item 3, as reported: 32 requests for distinct uncached blobs
// that hang up after 1 s used to leave 32 upstream downloads running, each
// with its S3 part buffer (memory grew by about 200 MiB). With
// PULLTHROUGH_MAX_FILLS=4 the local server over S3 starts at most four,
// answers the rest 503 with Retry-After, keeps its peak memory bounded, and
// still serves a pull afterwards.
func TestAbandonedRequestsStartBoundedFills(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds 96 MiB of layers")
	}
	s := newStack(t)
	const requests, maxFills = 32, 4
	img := testenv.SeedImage(t, s.reg, "org/many:1", 3<<20, requests)
	small := testenv.SeedImage(t, s.reg, "library/alpine:1", 64<<10, 2)
	mirror, proc := testenv.StartMirror(t, testenv.BuildMirror(t, false), s.env("PULLTHROUGH_MAX_FILLS="+strconv.Itoa(maxFills))...)
	before := peakRSS(t, proc.Cmd.Process.Pid)
	s.up.Reset()
	s.up.SetFault(testenv.FaultThrottle, "blob") // about 0.75 s a layer

	layers, _ := img.Layers()
	statuses := make(chan int, requests)
	for _, l := range layers {
		d, _ := l.Digest()
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, mirror+"/v2/org/many/blobs/"+d.String(), nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				statuses <- 0 // hung up
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	refused := 0
	for range requests {
		if <-statuses == http.StatusServiceUnavailable {
			refused++
		}
	}
	if n := s.up.Count(http.MethodGet, "blob"); n > maxFills {
		t.Errorf("%d abandoned requests started %d upstream downloads, want at most %d", requests, n, maxFills)
	}
	if refused < requests-maxFills {
		t.Errorf("got %d answers 503, want at least %d", refused, requests-maxFills)
	}
	s.up.SetFault(testenv.FaultNone, "")
	want, _ := small.Digest()
	if err := pullVerify(mirror, "library/alpine:1", want.String()); err != nil {
		t.Errorf("a pull after the burst: %v", err)
	}
	after := peakRSS(t, proc.Cmd.Process.Pid)
	t.Logf("peak RSS: %d MiB after start, %d MiB after the burst", before>>20, after>>20)
	if grew := after - before; grew > 64<<20 {
		t.Errorf("peak RSS grew by %d MiB, want under 64 MiB (at most %d fills of 3 MiB in part buffers)", grew>>20, maxFills)
	}
}

// peakRSS reads a process's peak resident set size (VmHWM) from Linux's
// /proc/<pid>/status, in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// Issue 11 item 2 through the real bootstrap: with redirect-upstream, every
// GET of an uncached blob is sent to the upstream's CDN and used to start
// another asynchronous fill invocation, even while the first one's fill was
// running. A loop of ten GETs must start one.
func TestLambdaRequestLoopStartsOneFillInvocation(t *testing.T) {
	s := newStack(t)
	img := testenv.SeedImage(t, s.reg, "library/cuda:1", 1<<20, 1)
	up, caFile, cdnGets := cdnFront(t, s)
	h, err := lambdaharness.New(lambdaharness.Options{Concurrency: 2, FunctionName: "pullthrough"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	env := append(s.env(),
		"PULLTHROUGH_UPSTREAM="+up, // replaces the stack's (exec keeps the last value)
		"PULLTHROUGH_LARGE_BLOB_POLICY=redirect-upstream",
		"SSL_CERT_FILE="+caFile, // the CDN's certificate, as the job follows the redirect
		"AWS_LAMBDA_RUNTIME_API="+h.RuntimeAPI(),
		"AWS_LAMBDA_FUNCTION_NAME=pullthrough",
		"AWS_ENDPOINT_URL_LAMBDA="+h.InvokeEndpoint(),
	)
	bin := testenv.BuildMirror(t, true)
	testenv.Start(t, env, bin)
	testenv.Start(t, env, bin)

	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	const loop = 10
	for i := range loop {
		resp := mustDo(t, testenv.NoRedirect, http.MethodGet, h.URL()+"/v2/library/cuda/blobs/"+ld.String())
		if resp.StatusCode != http.StatusTemporaryRedirect {
			t.Fatalf("GET %d: got %d, want 307", i, resp.StatusCode)
		}
	}
	if _, err := h.WaitAsync(1, time.Minute); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // any further invocation would have been accepted by now
	if n := h.AsyncInvocations(); n != 1 {
		t.Errorf("%d GETs of one uncached blob started %d fill invocations, want 1", loop, n)
	}
	if n := cdnGets.Load(); n != 1 {
		t.Errorf("the mirror fetched the blob from the CDN %d times, want 1", n)
	}
	resp := mustDo(t, testenv.NoRedirect, http.MethodGet, h.URL()+"/v2/library/cuda/blobs/"+ld.String())
	if resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(resp.Header.Get("Location"), s.s3.Endpoint) {
		t.Errorf("after the fill: got %d %q, want 307 to S3", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// cdnFront puts a Docker Hub-like front on the stack's upstream: blob GETs
// answer 307 to a signed URL on another (TLS) host, as Docker Hub's do
// (FACTS.md). The CDN waits 2 s before each blob, so a fill is in progress
// while requests keep coming. It returns the front's URL, a file with the
// CDN's certificate, and the count of GETs the CDN served.
func cdnFront(t *testing.T, s *stack) (string, string, *atomic.Int64) {
	t.Helper()
	var gets atomic.Int64
	rp := httputil.NewSingleHostReverseProxy(s.reg)
	cdn := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("sig") != "ok" || r.Header.Get("Authorization") != "" {
			http.Error(w, "bad signature or a forwarded credential", http.StatusForbidden)
			return
		}
		gets.Add(1)
		time.Sleep(2 * time.Second)
		r.URL.RawQuery = ""
		r.URL.Path = strings.TrimPrefix(r.URL.Path, "/cdn")
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(cdn.Close)
	next := httputil.NewSingleHostReverseProxy(s.up.URL)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && testenv.Kind(r.URL.Path) == "blob" {
			// Like Docker Hub's CDN URLs, the path is not a registry API
			// path (the mirror does not hand those to clients: they would
			// need that registry's token).
			http.Redirect(w, r, cdn.URL+"/cdn"+r.URL.Path+"?sig=ok", http.StatusTemporaryRedirect)
			return
		}
		next.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	caFile := filepath.Join(t.TempDir(), "cdn.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cdn.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return front.URL, caFile, &gets
}
