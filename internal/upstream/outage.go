package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"time"
)

// A hanging upstream (one that accepts connections and never answers) must
// cost the mirror one timeout, not one per request for the whole outage:
// quay's proxy cache hung 60 s and more per pull on an unreachable upstream
// before it set timeouts (quay/quay PR #5347), Harbor's waited minutes per
// pull of a cached image while ghcr.io was down (goharbor/harbor #18294,
// PR #23714). So each attempt has its own deadlines for connecting and for
// the response header (deadlineTransport; a body's progress is bounded by
// the readers in fetch.go), and a host that timed out or refused
// connections is remembered as failing for a short, growing interval in
// which requests to it fail at once with ErrHostDown (outageTransport):
// the serving side then serves cached content stale without waiting, and a
// cold request fails fast so the client can fall back. One request at a
// time probes for recovery. Each process (each Lambda instance) learns its
// own.

// Default deadlines of one attempt of an upstream request (Timeouts).
const (
	// DefaultConnectTimeout bounds getting a connection: DNS, TCP and TLS.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultFirstByteTimeout bounds the wait for the response header once
	// connected. It is shorter than the client's own bound on metadata
	// calls (60 s), so that a hang is noticed as the host's failure.
	DefaultFirstByteTimeout = 30 * time.Second
)

// How long a failing host is not asked: FailingFor, doubling with each
// failed probe up to MaxFailingFor; an answer forgets it.
const (
	FailingFor    = 5 * time.Second
	MaxFailingFor = 3 * time.Minute
)

// ErrHostDown: the upstream host timed out or refused connections moments
// ago and the request was not sent (see FailingFor).
var ErrHostDown = errors.New("upstream host is failing; request not sent")

// TimeoutError is an attempt that hit one of its own deadlines (Timeouts):
// Phase is "connect" or "first byte".
type TimeoutError struct {
	Host, Phase string
	After       time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("upstream %s: no %s within %s", e.Host, e.Phase, e.After)
}

// Timeout reports true, as net.Error does.
func (e *TimeoutError) Timeout() bool { return true }

// isTimeout: a deadline of ours or a network timeout below it. Such an
// attempt is not retried: the host hangs, and asking again costs another
// timeout.
func isTimeout(err error) bool {
	var te *TimeoutError
	var ne net.Error
	return errors.As(err, &te) || errors.As(err, &ne) && ne.Timeout()
}

// deadlineTransport bounds one attempt: Timeouts.Connect until a
// connection is had, then Timeouts.FirstByte until the response header.
type deadlineTransport struct {
	connect, firstByte time.Duration
	next               http.RoundTripper
}

// phaseTimeout is the cause an attempt's context is cancelled with when
// one of its deadlines passes.
type phaseTimeout struct {
	phase string
	after time.Duration
}

func (p *phaseTimeout) Error() string { return p.phase + " timeout" }

func (t deadlineTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	var (
		mu    sync.Mutex
		timer *time.Timer
	)
	// arm replaces the running deadline (none for d == 0). The trace's
	// hooks call it from the transport's goroutines.
	arm := func(phase string, d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		if timer != nil {
			timer.Stop()
		}
		if d > 0 {
			timer = time.AfterFunc(d, func() { cancel(&phaseTimeout{phase, d}) })
		}
	}
	arm("connect", t.connect)
	trace := &httptrace.ClientTrace{
		GotConn:              func(httptrace.GotConnInfo) { arm("first byte", t.firstByte) },
		GotFirstResponseByte: func() { arm("", 0) },
	}
	resp, err := t.next.RoundTrip(req.WithContext(httptrace.WithClientTrace(ctx, trace)))
	arm("", 0)
	var pt *phaseTimeout
	if errors.As(context.Cause(ctx), &pt) {
		// Also when the header came as the deadline passed: its body
		// would fail on the first read.
		if resp != nil {
			resp.Body.Close()
		}
		resp, err = nil, &TimeoutError{Host: req.URL.Host, Phase: pt.phase, After: pt.after}
	}
	if err != nil {
		cancel(nil)
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelOnClose ends an attempt's context with its body.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel(nil)
	return err
}

// outages remembers, per host, that it is failing: since when it is not
// asked, how many probes failed, and whether one is in flight.
type outages struct {
	mu    sync.Mutex
	hosts map[string]*outage // by lower-case host; absent: healthy
}

type outage struct {
	failures int       // the first failure and each failed probe
	until    time.Time // no request before this
	probing  bool
}

// failingFor is the interval after the n-th failure in a row.
func failingFor(n int) time.Duration {
	d := FailingFor
	for i := 1; i < n && d < MaxFailingFor; i++ {
		d *= 2
	}
	return min(d, MaxFailingFor)
}

// admit reports whether a request to host may be sent now, and whether it
// is the probe of a failing host.
func (o *outages) admit(host string, now time.Time) (ok, probe bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.hosts[host]
	switch {
	case s == nil:
		return true, false
	case s.probing || now.Before(s.until):
		return false, false
	}
	s.probing = true
	return true, true
}

// answered forgets that host was failing.
func (o *outages) answered(host string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.hosts, host)
}

// failed records a failure of a request to host. A request sent before
// the host was marked failing (not a probe) does not lengthen the interval.
func (o *outages) failed(host string, probe bool, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.hosts[host]
	if s != nil && !probe {
		return
	}
	if s == nil {
		if o.hosts == nil {
			o.hosts = map[string]*outage{}
		}
		if len(o.hosts) >= 256 {
			clear(o.hosts)
		}
		s = &outage{}
		o.hosts[host] = s
	}
	s.failures++
	s.until, s.probing = now.Add(failingFor(s.failures)), false
}

// gaveUp releases a probe whose caller went away before an answer: it
// says nothing of the host.
func (o *outages) gaveUp(host string, probe bool) {
	if !probe {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if s := o.hosts[host]; s != nil {
		s.probing = false
	}
}

// outageTransport refuses, with ErrHostDown and without sending it, a
// request to a host that is failing, lets one probe through once the
// interval has passed, and learns failures and recoveries from attempts:
// callers never check.
type outageTransport struct {
	c    *Client
	next http.RoundTripper
}

func (t outageTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	host := strings.ToLower(req.URL.Host)
	ok, probe := t.c.outages.admit(host, t.c.clock())
	if !ok {
		return nil, fmt.Errorf("%s: %w", host, ErrHostDown)
	}
	resp, err := t.next.RoundTrip(req)
	switch {
	case err == nil:
		t.c.outages.answered(host)
	case req.Context().Err() != nil:
		t.c.outages.gaveUp(host, probe)
	default:
		t.c.outages.failed(host, probe, t.c.clock())
	}
	return resp, err
}
