package main

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

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
