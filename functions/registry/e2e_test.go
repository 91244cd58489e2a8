package main

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pullthrough/pullthrough/internal/lambdaharness"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// stack is the real thing on loopback: the distribution registry as
// upstream (behind a counting wrapper), versitygw as S3.
type stack struct {
	reg *url.URL
	up  *testenv.Upstream
	s3  *testenv.S3Server
}

func newStack(t *testing.T) *stack {
	t.Helper()
	reg := testenv.DistributionRegistry(t)
	return &stack{reg: reg, up: testenv.NewUpstream(t, reg), s3: testenv.StartS3(t)}
}

// startBootstrap runs the real Lambda bootstrap on this stack under the
// function-URL harness, which treats responses as AWS does (Faithful).
func (s *stack) startBootstrap(t *testing.T) *lambdaharness.Harness {
	t.Helper()
	return s.startLambda(t, lambdaharness.Faithful)
}

// startLambda runs the real Lambda bootstrap under the function-URL harness
// in the given mode, with extra environment.
func (s *stack) startLambda(t *testing.T, mode lambdaharness.Mode, extra ...string) *lambdaharness.Harness {
	t.Helper()
	h, err := lambdaharness.New(lambdaharness.Options{Mode: mode})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	testenv.Start(t, append(s.env(extra...), "AWS_LAMBDA_RUNTIME_API="+h.RuntimeAPI(), "AWS_LAMBDA_FUNCTION_NAME=pullthrough"), testenv.BuildMirror(t, true))
	return h
}

// env is the stack's environment for a mirror process; with extra's
// PULLTHROUGH_UPSTREAMS it leaves out the stack's PULLTHROUGH_UPSTREAM,
// which the mirror refuses beside it.
func (s *stack) env(extra ...string) []string {
	// The stack's mirrors have no client credentials unless a test adds
	// them: open by choice, as a deployment must say (refuseOpen).
	env := append(s.s3.Env(""), "PULLTHROUGH_MANIFEST_TTL=1h", "PULLTHROUGH_ALLOW_OPEN=true")
	if !slices.ContainsFunc(extra, func(e string) bool { return strings.HasPrefix(e, "PULLTHROUGH_UPSTREAMS=") }) {
		env = append(env, "PULLTHROUGH_UPSTREAM="+s.up.URL.String())
	}
	return append(env, extra...)
}

func TestLocalServerOverS3(t *testing.T) {
	s := newStack(t)
	img := testenv.SeedImage(t, s.reg, "library/alpine:3.20", 256<<10, 3)
	idx := testenv.SeedIndex(t, s.reg, "library/multi:1", 64<<10, 2, 2)
	mirror, _ := testenv.StartMirror(t, testenv.BuildMirror(t, false), s.env()...)

	want, _ := img.Digest()
	if got := testenv.PullImage(t, mirror, "library/alpine:3.20"); got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	wantIdx, _ := idx.Digest()
	if got := testenv.PullIndex(t, mirror, "library/multi:1"); got != wantIdx {
		t.Fatalf("got index %s, want %s", got, wantIdx)
	}
	s.up.Reset()
	testenv.PullImage(t, mirror, "library/alpine:3.20")
	testenv.PullIndex(t, mirror, "library/multi:1")
	if n := s.up.Count("", "blob"); n != 0 {
		t.Errorf("warm pulls made %d upstream blob requests, want 0", n)
	}

	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	size, _ := layers[0].Size()
	rc, _ := layers[0].Compressed()
	layerBytes, _ := io.ReadAll(rc)
	blobURL := mirror + "/v2/library/alpine/blobs/" + ld.String()

	t.Run("blob HEAD answers from metadata without redirect", func(t *testing.T) {
		resp := mustDo(t, testenv.NoRedirect, http.MethodHead, blobURL)
		if resp.StatusCode != 200 || resp.ContentLength != size || resp.Header.Get("Docker-Content-Digest") != ld.String() || resp.Header.Get("Location") != "" {
			t.Errorf("got %d len %d digest %q location %q; want 200 %d %s none", resp.StatusCode, resp.ContentLength, resp.Header.Get("Docker-Content-Digest"), resp.Header.Get("Location"), size, ld)
		}
	})

	t.Run("blob GET redirects to a presigned S3 URL", func(t *testing.T) {
		resp := mustDo(t, testenv.NoRedirect, http.MethodGet, blobURL)
		if resp.StatusCode != http.StatusTemporaryRedirect {
			t.Fatalf("got %d, want 307", resp.StatusCode)
		}
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil || loc.Host != strings.TrimPrefix(s.s3.Endpoint, "http://") || !strings.Contains(loc.RawQuery, "X-Amz-Signature") {
			t.Fatalf("Location %q is not a presigned URL on the S3 server", resp.Header.Get("Location"))
		}
		body := mustGet(t, loc.String())
		if !bytes.Equal(body, layerBytes) {
			t.Errorf("presigned URL served %d bytes that differ from the layer", len(body))
		}
	})

	t.Run("manifests are served inline, never redirected", func(t *testing.T) {
		resp := mustDo(t, testenv.NoRedirect, http.MethodGet, mirror+"/v2/library/alpine/manifests/3.20")
		if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != want.String() || resp.Header.Get("ETag") == "" {
			t.Errorf("got %d digest %q etag %q", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), resp.Header.Get("ETag"))
		}
	})

	t.Run("wrong method gets the OCI error", func(t *testing.T) {
		resp := mustDo(t, testenv.NoRedirect, http.MethodPut, mirror+"/v2/library/alpine/manifests/3.20")
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 405 || !strings.Contains(string(b), `"code":"UNSUPPORTED"`) {
			t.Errorf("got %d %s", resp.StatusCode, b)
		}
	})

	t.Run("upstream down: cached pulls still work", func(t *testing.T) {
		s.up.SetFault(testenv.FaultDown, "")
		defer s.up.SetFault(testenv.FaultNone, "")
		testenv.PullImage(t, mirror, "library/alpine@"+want.String())
		testenv.PullImage(t, mirror, "library/alpine:3.20")
	})

	if n := s.s3.PendingUploads(t); n != 0 {
		t.Errorf("%d multipart uploads left pending", n)
	}
}

func TestCorruptBlobNeverReachesS3(t *testing.T) {
	s := newStack(t)
	// Large enough for a multipart upload, so abort is exercised too.
	img := testenv.SeedImage(t, s.reg, "org/big:1", 12<<20, 1)
	mirror, _ := testenv.StartMirror(t, testenv.BuildMirror(t, false), s.env()...)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	blobURL := mirror + "/v2/org/big/blobs/" + ld.String()

	// A connection cut short of the announced length is resumed instead,
	// and the whole verified (internal/proxy TestFillResumesCutTransfers).
	for _, f := range []testenv.Fault{testenv.FaultCorrupt, testenv.FaultTruncate} {
		s.up.SetFault(f, "blob")
		resp := mustDo(t, testenv.NoRedirect, http.MethodGet, blobURL)
		// A fill that fails while it streams cuts the transfer: the client
		// never gets a whole body, and reading to the cut waits out the
		// fill's clean-up.
		_, rerr := io.ReadAll(resp.Body)
		if resp.StatusCode < 500 && !(resp.StatusCode == http.StatusOK && rerr != nil) {
			t.Errorf("fault %d: got %d (body error %v), want 5xx or a cut stream", f, resp.StatusCode, rerr)
		}
		for _, k := range s.s3.Keys(t) {
			if strings.Contains(k, ld.Hex) {
				t.Fatalf("fault %d: unverified blob stored at %s", f, k)
			}
		}
		if n := s.s3.PendingUploads(t); n != 0 {
			t.Errorf("fault %d: %d multipart uploads left pending", f, n)
		}
	}
	s.up.SetFault(testenv.FaultNone, "")
	testenv.PullImage(t, mirror, "org/big:1")
}

func TestSHA512Blob(t *testing.T) {
	s := newStack(t)
	data := bytes.Repeat([]byte("sha512 content "), 4096)
	sum := sha512.Sum512(data)
	dgst := "sha512:" + hex.EncodeToString(sum[:])
	// A two-step upload straight to the upstream registry, which accepts
	// and serves sha512 digests.
	start, err := http.Post(s.reg.String()+"/v2/org/five12/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	start.Body.Close()
	req, _ := http.NewRequest(http.MethodPut, start.Header.Get("Location")+"&digest="+dgst, bytes.NewReader(data))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upstream refused the sha512 blob: %d", resp.StatusCode)
	}
	mirror, _ := testenv.StartMirror(t, testenv.BuildMirror(t, false), s.env()...)
	if got := mustGet(t, mirror+"/v2/org/five12/blobs/"+dgst); !bytes.Equal(got, data) {
		t.Errorf("got %d bytes that differ from the sha512 blob", len(got))
	}
	head := mustDo(t, testenv.NoRedirect, http.MethodHead, mirror+"/v2/org/five12/blobs/"+dgst)
	if head.Header.Get("Docker-Content-Digest") != dgst || head.ContentLength != int64(len(data)) {
		t.Errorf("HEAD: got %q %d", head.Header.Get("Docker-Content-Digest"), head.ContentLength)
	}
}

func TestLambdaBootstrapUnderFunctionURLHarness(t *testing.T) {
	s := newStack(t)
	img := testenv.SeedImage(t, s.reg, "library/alpine:3.20", 128<<10, 3)
	h := s.startBootstrap(t)

	want, _ := img.Digest()
	if got := testenv.PullImage(t, h.URL(), "library/alpine:3.20"); got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	layers, _ := img.Layers()
	ld, _ := layers[1].Digest()
	resp := mustDo(t, testenv.NoRedirect, http.MethodGet, h.URL()+"/v2/library/alpine/blobs/"+ld.String())
	if resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(resp.Header.Get("Location"), s.s3.Endpoint) {
		t.Errorf("blob hit through the function URL: got %d %q, want 307 to S3", resp.StatusCode, resp.Header.Get("Location"))
	}
	if h.Invocations() == 0 {
		t.Errorf("the harness saw no invocations")
	}

	// The function URL drops Content-Length, so a blob HEAD on a hit is a
	// redirect to a presigned S3 HEAD, whose answer has it: a client that
	// sizes a layer with HEAD (go-containerregistry's remote.Layer) gets
	// the size, not -1.
	resp = mustDo(t, testenv.NoRedirect, http.MethodHead, h.URL()+"/v2/library/alpine/blobs/"+ld.String())
	if resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(resp.Header.Get("Location"), s.s3.Endpoint) {
		t.Errorf("blob HEAD through the function URL: got %d %q, want 307 to S3", resp.StatusCode, resp.Header.Get("Location"))
	}
	ref, err := name.NewDigest(strings.TrimPrefix(h.URL(), "http://")+"/library/alpine@"+ld.String(), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	layer, err := remote.Layer(ref)
	if err != nil {
		t.Fatal(err)
	}
	size, err := layer.Size()
	if want, _ := layers[1].Size(); err != nil || size != want {
		t.Errorf("remote.Layer(...).Size(): got %d, %v; want %d", size, err, want)
	}
}

// In AWS, S3 is HTTPS: the SDK then signs no payloads and sends part
// checksums in aws-chunked trailers, a different wire format from the plain
// HTTP the other tests use. The real bootstrap fills a multipart layer
// into versitygw over TLS (trusting its certificate through AWS_CA_BUNDLE),
// and the client follows the 307 to an https presigned URL.
func TestLambdaBootstrapOverHTTPSS3(t *testing.T) {
	reg := testenv.DistributionRegistry(t)
	s := &stack{reg: reg, up: testenv.NewUpstream(t, reg), s3: testenv.StartS3TLS(t)}
	img := testenv.SeedImage(t, s.reg, "library/tls:1", 20<<20, 2) // 3 parts of 8 MiB each
	h := s.startBootstrap(t)

	want, _ := img.Digest()
	trust := remote.WithTransport(s.s3.Transport())
	if got := testenv.PullImage(t, h.URL(), "library/tls:1", trust); got != want {
		t.Fatalf("cold pull: got %s, want %s", got, want)
	}
	s.up.Reset()
	if got := testenv.PullImage(t, h.URL(), "library/tls:1", trust); got != want {
		t.Fatalf("warm pull: got %s, want %s", got, want)
	}
	if n := s.up.Count("", "blob"); n != 0 {
		t.Errorf("warm pull made %d upstream blob requests, want 0", n)
	}
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	resp := mustDo(t, testenv.NoRedirect, http.MethodGet, h.URL()+"/v2/library/tls/blobs/"+ld.String())
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(loc, "https://") {
		t.Errorf("blob hit: got %d %q, want 307 to https", resp.StatusCode, loc)
	}
	if n := s.s3.PendingUploads(t); n != 0 {
		t.Errorf("%d multipart uploads left pending", n)
	}
}

func TestInvalidConfigurationExitsWithOneLine(t *testing.T) {
	bin := testenv.BuildMirror(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = []string{"PULLTHROUGH_MANIFEST_TTL=later", "PULLTHROUGH_STORE=file://" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("got %v, want exit status 1", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "PULLTHROUGH_MANIFEST_TTL") {
		t.Errorf("got %q, want one line naming PULLTHROUGH_MANIFEST_TTL", out)
	}
}

func mustDo(t *testing.T, c *http.Client, method, u string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func mustGet(t *testing.T, u string) []byte {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	return b
}

func TestWarmCommandFillsTheStore(t *testing.T) {
	s := newStack(t)
	img := testenv.SeedImage(t, s.reg, "library/alpine:3.20", 64<<10, 2)
	bin := testenv.BuildMirror(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "warm", "library/alpine:3.20")
	cmd.Env = s.env("PULLTHROUGH_UPSTREAMS=docker.io=" + s.up.URL.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("warm: %v\n%s", err, out)
	}
	layers, _ := img.Layers()
	keys := strings.Join(s.s3.Keys(t), "\n")
	for _, l := range layers {
		d, _ := l.Digest()
		if !strings.Contains(keys, "blobs/sha256/"+d.Hex) {
			t.Errorf("layer %s not in the bucket after warm:\n%s", d, out)
		}
	}
	if !strings.Contains(string(out), "filled") {
		t.Errorf("no progress printed:\n%s", out)
	}
}

// startSelfInvokingLambda runs two bootstraps under a harness with two
// execution environments and the Invoke API, so that fills of blobs of 1 MiB
// or more run in invocations of their own while requests wait up to
// fillWait for them.
func (s *stack) startSelfInvokingLambda(t *testing.T, fillWait time.Duration) (*lambdaharness.Harness, []*testenv.Process) {
	t.Helper()
	h, err := lambdaharness.New(lambdaharness.Options{Concurrency: 2, FunctionName: "pullthrough"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	env := append(s.env(),
		"AWS_LAMBDA_RUNTIME_API="+h.RuntimeAPI(),
		"AWS_LAMBDA_FUNCTION_NAME=pullthrough",
		"AWS_ENDPOINT_URL_LAMBDA="+h.InvokeEndpoint(),
		"PULLTHROUGH_LARGE_BLOB_POLICY=wait",
		"PULLTHROUGH_LARGE_BLOB_SIZE=1MiB",
		"PULLTHROUGH_FILL_WAIT="+fillWait.String(),
	)
	bin := testenv.BuildMirror(t, true)
	return h, []*testenv.Process{testenv.Start(t, env, bin), testenv.Start(t, env, bin)}
}

// In Lambda a fill that may outlast the request runs in an asynchronous
// invocation of the function itself: the client is told to retry instead of
// waiting silently, and the retry is a hit.
func TestLambdaLargeBlobFillsInItsOwnInvocation(t *testing.T) {
	s := newStack(t)
	img := testenv.SeedImage(t, s.reg, "library/cuda:1", 12<<20, 1)
	h, _ := s.startSelfInvokingLambda(t, time.Second)

	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	// As clients do, the manifest first: it links the layer to the
	// repository, so the fill needs no HEAD to confirm it.
	mustGet(t, h.URL()+"/v2/library/cuda/manifests/1")
	s.up.SetFault(testenv.FaultThrottle, "blob") // about 3 s for 12 MiB
	resp := mustDo(t, testenv.NoRedirect, http.MethodGet, h.URL()+"/v2/library/cuda/blobs/"+ld.String())
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("large miss: got %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	results, err := h.WaitAsync(1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if results[0].Err != nil || !strings.Contains(string(results[0].Event), ld.String()) {
		t.Fatalf("fill invocation: event %s, error %v", results[0].Event, results[0].Err)
	}
	resp = mustDo(t, testenv.NoRedirect, http.MethodGet, h.URL()+"/v2/library/cuda/blobs/"+ld.String())
	if resp.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("after the fill: got %d, want 307", resp.StatusCode)
	}
	rc, _ := layers[0].Compressed()
	want, _ := io.ReadAll(rc)
	if got := mustGet(t, resp.Header.Get("Location")); !bytes.Equal(got, want) {
		t.Errorf("filled blob differs from the layer")
	}
	// The request's GET learns the size from Content-Length and is dropped
	// after the headers; the fill invocation's GET is the one transfer.
	if n := s.up.Count(http.MethodGet, "blob"); n != 2 {
		t.Errorf("got %d upstream blob GETs, want 2", n)
	}
	if n := s.up.Count(http.MethodHead, "blob"); n != 0 {
		t.Errorf("got %d upstream blob HEADs, want 0", n)
	}
}

// A fill that fails in its own invocation is seen: the function logs it
// with the FillFailures metric, and the request waiting for the blob stops
// waiting at once instead of polling for PULLTHROUGH_FILL_WAIT.
func TestLambdaFailedFillIsSeenAndEndsTheWait(t *testing.T) {
	s := newStack(t)
	img := testenv.SeedImage(t, s.reg, "library/broken:1", 3<<20, 1)
	const fillWait = 60 * time.Second
	h, procs := s.startSelfInvokingLambda(t, fillWait)

	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	s.up.SetFault(testenv.FaultCorrupt, "blob")
	start := time.Now()
	resp := mustDo(t, testenv.NoRedirect, http.MethodGet, h.URL()+"/v2/library/broken/blobs/"+ld.String())
	took := time.Since(start)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("got %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if took > fillWait/3 {
		t.Errorf("the request waited %v for a fill that had failed (fill wait %v)", took, fillWait)
	}
	results, err := h.WaitAsync(1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if results[0].Err == nil {
		t.Errorf("the fill invocation succeeded, want a function error")
	}
	var logs string
	for _, p := range procs {
		logs += p.Output()
	}
	if !strings.Contains(logs, `"msg":"background fill failed"`) || !strings.Contains(logs, `{"Name":"FillFailures","Unit":"Count"}`) {
		t.Errorf("no log line with the FillFailures metric for the failed fill:\n%s", logs)
	}
}
