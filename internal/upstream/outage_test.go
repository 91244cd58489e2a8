package upstream_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/testenv"
	"github.com/pullthrough/pullthrough/internal/upstream"
)

// clock is the client's clock, moved by tests past failing intervals.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

func newClient(t *testing.T, url string, timeouts upstream.Timeouts) (*upstream.Client, *clock) {
	t.Helper()
	c, err := upstream.New(upstream.Config{Host: "hang.example", URL: url, Timeouts: timeouts})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{}
	c.SetClock(clk.now)
	return c, clk
}

func bounded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestAttemptDeadlines: against a server that accepts TCP connections and
// never writes (testenv.Silent), an attempt ends at its own deadline for
// the phase it hangs in (through https the TLS handshake never completes:
// connect; through http no header comes: first byte), as a TimeoutError
// naming it, and is not retried: one connection, one timeout. Each case's
// other deadline is a minute, so the wrong one cannot end it in time.
func TestAttemptDeadlines(t *testing.T) {
	const short, long = 300 * time.Millisecond, time.Minute
	for _, tc := range []struct {
		name, scheme string
		timeouts     upstream.Timeouts
		want         string
	}{
		{"TLS handshake never completes", "https", upstream.Timeouts{Connect: short, FirstByte: long}, "connect"},
		{"no response header", "http", upstream.Timeouts{Connect: long, FirstByte: short}, "first byte"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			silent := testenv.NewSilent(t)
			c, _ := newClient(t, tc.scheme+"://"+silent.Addr, tc.timeouts)
			_, _, err := c.HeadManifest(bounded(t), "org/app", "1")
			var te *upstream.TimeoutError
			if !errors.As(err, &te) {
				t.Fatalf("got %v, want a TimeoutError", err)
			}
			if te.Phase != tc.want {
				t.Errorf("got phase %q, want %q", te.Phase, tc.want)
			}
			if n := silent.Accepted(); n != 1 {
				t.Errorf("got %d connections, want 1 (a timeout is not retried)", n)
			}
		})
	}
}

// TestWhatMarksAHostFailing: a hang or refused connections make the next
// request fail fast with ErrHostDown, without being sent; any answer, an
// error status included, does not.
func TestWhatMarksAHostFailing(t *testing.T) {
	refused := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return "http://" + addr
	}
	for _, tc := range []struct {
		name     string
		fault    testenv.Fault
		url      func(*testing.T) string // nil: the counting upstream
		wantDown bool
	}{
		{"hang", testenv.FaultHang, nil, true},
		{"connection refused", testenv.FaultNone, refused, true},
		{"connection closed without an answer", testenv.FaultDown, nil, true},
		{"500", testenv.Fault500, nil, false},
		{"404", testenv.FaultNone, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := testenv.NewUpstream(t, testenv.InProcessRegistry(t))
			up.SetFault(tc.fault, "")
			url := up.URL.String()
			if tc.url != nil {
				url = tc.url(t)
			}
			c, _ := newClient(t, url, upstream.Timeouts{FirstByte: 300 * time.Millisecond})
			ctx := bounded(t)
			c.HeadManifest(ctx, "org/app", "1")
			before := up.Total()
			_, _, err := c.HeadManifest(ctx, "org/app", "1")
			if got := errors.Is(err, upstream.ErrHostDown); got != tc.wantDown {
				t.Errorf("second request: got %v, want ErrHostDown %v", err, tc.wantDown)
			}
			if sent := up.Total() - before; tc.wantDown && sent != 0 {
				t.Errorf("got %d requests sent to a failing host, want 0", sent)
			}
		})
	}
}

// TestFailingHostIsProbed: a hanging host is not asked for 5 s, then one
// probe goes through; each failed probe doubles the interval, an answer
// forgets the failure, and a new hang starts again from 5 s. The steps
// share one client and one upstream; the clock is the client's.
func TestFailingHostIsProbed(t *testing.T) {
	up := testenv.NewUpstream(t, testenv.InProcessRegistry(t))
	c, clk := newClient(t, up.URL.String(), upstream.Timeouts{FirstByte: 300 * time.Millisecond})
	ctx := bounded(t)
	const half = 500 * time.Millisecond
	for _, step := range []struct {
		name    string
		fault   testenv.Fault
		advance time.Duration
		want    string // "timeout", "down" or "answer"
		sent    int    // manifest HEADs the upstream has seen in all
	}{
		{"hang: the first request waits its timeout", testenv.FaultHang, 0, "timeout", 1},
		{"the next fails fast", testenv.FaultHang, 0, "down", 1},
		{"within 5 s it still fails fast", testenv.FaultHang, 5*time.Second - half, "down", 1},
		{"after 5 s a probe is sent", testenv.FaultHang, time.Second, "timeout", 2},
		{"a failed probe: 10 s", testenv.FaultHang, 10*time.Second - half, "down", 2},
		{"after 10 s another probe", testenv.FaultHang, time.Second, "timeout", 3},
		{"recovered, but 20 s have not passed", testenv.FaultNone, 20*time.Second - half, "down", 3},
		{"after 20 s the probe gets an answer", testenv.FaultNone, time.Second, "answer", 4},
		{"the failure is forgotten", testenv.FaultNone, 0, "answer", 5},
		{"a new hang", testenv.FaultHang, 0, "timeout", 6},
		{"is probed after 5 s again", testenv.FaultHang, 5*time.Second + half, "timeout", 7},
	} {
		up.SetFault(step.fault, "")
		clk.advance(step.advance)
		status, _, err := c.HeadManifest(ctx, "org/app", "1")
		var te *upstream.TimeoutError
		got := "answer"
		switch {
		case errors.As(err, &te):
			got = "timeout"
		case errors.Is(err, upstream.ErrHostDown):
			got = "down"
		case err != nil:
			got = err.Error()
		}
		if got != step.want {
			t.Errorf("%s: got %s (status %d), want %s", step.name, got, status, step.want)
		}
		if n := up.Count(http.MethodHead, "manifest"); n != step.sent {
			t.Errorf("%s: got %d requests upstream, want %d", step.name, n, step.sent)
		}
	}
}

// TestOneProbeAtATime: while a probe of a failing host waits for its
// answer, other requests fail fast without being sent; a probe whose
// caller gave up says nothing of the host, and the next request probes.
func TestOneProbeAtATime(t *testing.T) {
	up := testenv.NewUpstream(t, testenv.InProcessRegistry(t))
	// The first-byte deadline is long: the probe stays in flight until the
	// test cancels it.
	c, clk := newClient(t, up.URL.String(), upstream.Timeouts{FirstByte: time.Minute})
	ctx := bounded(t)
	up.SetFault(testenv.FaultDown, "")
	c.HeadManifest(ctx, "org/app", "1") // connections closed unanswered: failing
	up.SetFault(testenv.FaultHang, "")
	clk.advance(upstream.FailingFor + time.Second)
	before := up.Count(http.MethodHead, "manifest")

	probeCtx, cancelProbe := context.WithCancel(ctx)
	defer cancelProbe()
	probed := make(chan error, 1)
	go func() {
		_, _, err := c.HeadManifest(probeCtx, "org/app", "1")
		probed <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); up.Count(http.MethodHead, "manifest") == before; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the probe never reached the upstream")
		}
	}
	for i := range 3 {
		if _, _, err := c.HeadManifest(ctx, "org/app", "1"); !errors.Is(err, upstream.ErrHostDown) {
			t.Errorf("request %d during the probe: got %v, want ErrHostDown", i, err)
		}
	}
	if n := up.Count(http.MethodHead, "manifest") - before; n != 1 {
		t.Errorf("got %d requests upstream during the probe, want 1 (the probe)", n)
	}
	cancelProbe()
	if err := <-probed; !errors.Is(err, context.Canceled) {
		t.Errorf("probe: got %v, want context.Canceled", err)
	}
	up.SetFault(testenv.FaultNone, "")
	if status, _, err := c.HeadManifest(ctx, "org/app", "1"); err != nil || status != http.StatusNotFound {
		t.Errorf("after the probe gave up: got %d %v, want a new probe answered 404", status, err)
	}
}
