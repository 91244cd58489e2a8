package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/proxy"
)

// capRate is the per-connection rate of the CDN stand-in. A CDN or object
// store front end serves each connection at its own, often modest, rate:
// one TCP flow is bounded by the front end it lands on (reported in
// beam-cloud/beta9#1876, which parallel-pulls layers with ranges for it;
// containerd/containerd#9922 and opencontainers/distribution-spec#536 ask
// for ranged parallel layer downloads for the same reason, and
// amazon-ecr-containerd-resolver does them). The rate here is a stand-in,
// not a measurement of any one CDN.
const capRate = 32 << 20 // bytes per second, per request

// startRateCapped serves target through a reverse proxy that sends each
// response body at no more than capRate: each request has its own budget,
// as each connection would (clients send one request at a time per
// connection). Range requests pass through, so a registry that honours
// Range still does.
func startRateCapped(t *testing.T, target *url.URL) *url.URL {
	t.Helper()
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rp.ServeHTTP(&cappedWriter{ResponseWriter: w, start: time.Now()}, r)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return u
}

type cappedWriter struct {
	http.ResponseWriter
	start time.Time
	sent  int64
}

// Write sends b in 64 KiB slices, sleeping whenever the request is ahead
// of capRate.
func (c *cappedWriter) Write(b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		n := min(len(b), 64<<10)
		if ahead := time.Duration(float64(c.sent+int64(n))/capRate*float64(time.Second)) - time.Since(c.start); ahead > 0 {
			time.Sleep(ahead)
		}
		m, err := c.ResponseWriter.Write(b[:n])
		written += m
		c.sent += int64(m)
		if err != nil {
			return written, err
		}
		b = b[n:]
	}
	return written, nil
}

func (c *cappedWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// parallelFillResult compares a cold fill of the big blob from the
// rate-capped stand-in with one stream and with parallel ranged GETs.
type parallelFillResult struct {
	Blob     int64 `json:"blobBytes"`
	CapRate  int64 `json:"capBytesPerSecond"`
	Parts    int   `json:"parts"` // ranged GETs at once (PULLTHROUGH_FILL_PARTS)
	PartSize int64 `json:"partSize"`
	// Until the blob is in S3, and until the client's last byte.
	Single         []time.Duration `json:"singleNs"`
	Parallel       []time.Duration `json:"parallelNs"`
	SingleClient   []time.Duration `json:"singleClientNs"`
	ParallelClient []time.Duration `json:"parallelClientNs"`
}

// parallelRuns bounds the runs of the parallel-fill comparison: the single
// stream of a 1 GiB blob at capRate alone takes half a minute.
// BENCH_FILL_PARTS and BENCH_FILL_PART_MIB set the parallel fill's parts
// in flight and part size (default the product's).
const parallelRuns = 2

// measureParallelFill times cold blob GETs (to the last byte, which the
// mirror sends once the blob is verified and in S3) of the big blob
// through a fresh local mirror whose upstream is the rate-capped stand-in,
// with PULLTHROUGH_FILL_PARTS=1 and with the default.
func measureParallelFill(ctx context.Context, t *testing.T, e *benchEnv) parallelFillResult {
	t.Helper()
	capped := startRateCapped(t, e.reg)
	res := parallelFillResult{Blob: e.p.BigBlob, CapRate: capRate, Parts: proxy.DefaultFillParts, PartSize: proxy.DefaultFillPartSize}
	tuning := []string{}
	if v := os.Getenv("BENCH_FILL_PARTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2 {
			t.Fatalf("BENCH_FILL_PARTS: want an integer ≥ 2, got %q", v)
		}
		res.Parts = n
		tuning = append(tuning, "PULLTHROUGH_FILL_PARTS="+v)
	}
	if v := os.Getenv("BENCH_FILL_PART_MIB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("BENCH_FILL_PART_MIB: want an integer ≥ 1, got %q", v)
		}
		res.PartSize = int64(n) * mib
		tuning = append(tuning, fmt.Sprintf("PULLTHROUGH_FILL_PART_SIZE=%dMiB", n))
	}
	for run := range min(e.p.Runs, parallelRuns) {
		single := e.mirrorFill(ctx, t, fmt.Sprintf("bench/capped-single-%d", run), bigRepo, e.bigDigest,
			"PULLTHROUGH_UPSTREAM="+capped.String(), "PULLTHROUGH_FILL_PARTS=1")
		parallel := e.mirrorFill(ctx, t, fmt.Sprintf("bench/capped-parallel-%d", run), bigRepo, e.bigDigest,
			append([]string{"PULLTHROUGH_UPSTREAM=" + capped.String()}, tuning...)...)
		res.Single = append(res.Single, single.published)
		res.Parallel = append(res.Parallel, parallel.published)
		res.SingleClient = append(res.SingleClient, single.took)
		res.ParallelClient = append(res.ParallelClient, parallel.took)
		t.Logf("capped fill  run %d: in S3 after one stream %5.2fs, parallel ranges %5.2fs; client's last byte %5.2fs and %5.2fs (%s at %s/s per connection, %d × %s)",
			run+1, single.published.Seconds(), parallel.published.Seconds(), single.took.Seconds(), parallel.took.Seconds(),
			mibString(e.p.BigBlob), mibString(capRate), res.Parts, mibString(res.PartSize))
	}
	return res
}
