package lambdaharness_test

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/lambdaharness"
)

// A RESPONSE_STREAM function URL renames the function's Content-Length and
// sends the body chunked, so a HEAD answer carries no length
// (cargo-lambda/cargo-lambda#862, aws/aws-lambda-go#577). Permissive mode
// passes the length through.
func TestFaithfulStreamedLength(t *testing.T) {
	const size = 1 << 20
	for _, tc := range []struct {
		mode         lambdaharness.Mode
		wantLength   int64  // resp.ContentLength on GET
		wantHeadCL   string // Content-Length header on HEAD
		wantRemapped string
		wantChunked  bool
	}{
		{lambdaharness.Faithful, -1, "", strconv.Itoa(size), true},
		{lambdaharness.Permissive, size, strconv.Itoa(size), "", false},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, lambdaharness.Options{Mode: tc.mode})
			startEcho(t, h)
			c := newClient(t)
			url := h.URL() + "/big?size=" + strconv.Itoa(size) + "&seed=3"

			resp, err := c.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(body, bigBody(size, 3)) {
				t.Errorf("GET: got %d bytes that differ from the %d served", len(body), size)
			}
			if resp.ContentLength != tc.wantLength {
				t.Errorf("GET: got ContentLength %d, want %d", resp.ContentLength, tc.wantLength)
			}
			if got := len(resp.TransferEncoding) == 1 && resp.TransferEncoding[0] == "chunked"; got != tc.wantChunked {
				t.Errorf("GET: got Transfer-Encoding %q, want chunked: %v", resp.TransferEncoding, tc.wantChunked)
			}
			if got := resp.Header.Get("X-Amzn-Remapped-Content-Length"); got != tc.wantRemapped {
				t.Errorf("GET: got X-Amzn-Remapped-Content-Length %q, want %q", got, tc.wantRemapped)
			}

			req, _ := http.NewRequest(http.MethodHead, url, nil)
			resp, err = c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("Content-Length"); got != tc.wantHeadCL {
				t.Errorf("HEAD: got Content-Length %q, want %q", got, tc.wantHeadCL)
			}
			if got := resp.Header.Get("X-Amzn-Remapped-Content-Length"); got != tc.wantRemapped {
				t.Errorf("HEAD: got X-Amzn-Remapped-Content-Length %q, want %q", got, tc.wantRemapped)
			}

			// A short body the function set no length for stays chunked too:
			// the harness must not compute one as net/http would.
			resp, err = c.Get(h.URL() + "/echo")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if tc.mode == lambdaharness.Faithful && resp.ContentLength != -1 {
				t.Errorf("short GET: got ContentLength %d, want none", resp.ContentLength)
			}
		})
	}
}

// Past its first 6 MB a streamed body goes at 2 MB/s (here sped up 2×), so a
// design that streams big bodies through the function is visibly slow.
func TestFaithfulStreamThrottle(t *testing.T) {
	const extra = 8 << 20
	const size = 6<<20 + extra
	const speedup = 2
	want := time.Duration(float64(extra) / (2 << 20 * speedup) * float64(time.Second)) // 2 s
	for _, tc := range []struct {
		mode lambdaharness.Mode
		slow bool
	}{
		{lambdaharness.Faithful, true},
		{lambdaharness.Permissive, false},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			h := newHarness(t, lambdaharness.Options{Mode: tc.mode, StreamSpeedup: speedup})
			startEcho(t, h)
			c := newClient(t)
			start := time.Now()
			resp, err := c.Get(h.URL() + "/big?size=" + strconv.Itoa(size) + "&seed=5")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			sum := sha256.New()
			if _, err := io.CopyN(sum, resp.Body, 6<<20); err != nil {
				t.Fatal(err)
			}
			burst := time.Since(start)
			if _, err := io.Copy(sum, resp.Body); err != nil {
				t.Fatal(err)
			}
			total := time.Since(start)
			if w := sha256.Sum256(bigBody(size, 5)); !bytes.Equal(sum.Sum(nil), w[:]) {
				t.Errorf("body differs from the one served")
			}
			t.Logf("first 6 MiB after %v, all %d MiB after %v", burst, size>>20, total)
			if tc.slow && total-burst < want*9/10 {
				t.Errorf("got the last %d MiB in %v, want at least %v (2 MB/s × %d)", extra>>20, total-burst, want*9/10, speedup)
			}
			if !tc.slow && total >= want/2 {
				t.Errorf("got %d MiB in %v, want well under %v (no throttle)", size>>20, total, want/2)
			}
		})
	}
}

// A streamed body past the response size cap is cut off: the client sees
// a truncated chunked body, never a complete one. The function survives.
func TestFaithfulResponseSizeCap(t *testing.T) {
	const max, size = 1 << 20, 3 << 20
	for _, tc := range []struct {
		mode    lambdaharness.Mode
		wantCut bool
	}{
		{lambdaharness.Faithful, true},
		{lambdaharness.Permissive, false},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, lambdaharness.Options{Mode: tc.mode, MaxResponseSize: max})
			startEcho(t, h)
			c := newClient(t)
			resp, err := c.Get(h.URL() + "/big?size=" + strconv.Itoa(size) + "&seed=9")
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if tc.wantCut {
				if err == nil || len(body) > max {
					t.Errorf("got %d bytes, error %v; want at most %d and an error", len(body), err, max)
				}
			} else if err != nil || len(body) != size {
				t.Errorf("got %d bytes, error %v; want %d", len(body), err, size)
			}
			if !bytes.Equal(body, bigBody(size, 9)[:len(body)]) {
				t.Errorf("the %d bytes received differ from those served", len(body))
			}
			resp, e := doEcho(t, c, http.MethodGet, h.URL()+"/after", nil, nil)
			if resp.StatusCode != 299 || e.Path != "/after" {
				t.Errorf("next request: got %d %+v", resp.StatusCode, e)
			}
		})
	}
}

// A function URL refuses a request body over Lambda's 6 MB payload limit.
func TestRequestPayloadCap(t *testing.T) {
	h := newHarness(t, lambdaharness.Options{})
	startEcho(t, h)
	c := newClient(t)
	for _, tc := range []struct {
		size int
		want int
	}{
		{6<<20 + 1, http.StatusRequestEntityTooLarge},
		{1 << 10, 299},
	} {
		resp, err := c.Post(h.URL()+"/upload", "application/octet-stream", strings.NewReader(strings.Repeat("x", tc.size)))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("POST of %d bytes: got %d, want %d", tc.size, resp.StatusCode, tc.want)
		}
	}
	if got := h.Invocations(); got != 1 {
		t.Errorf("got %d invocations, want 1 (the oversized request never reaches the function)", got)
	}
}
