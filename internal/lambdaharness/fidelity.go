package lambdaharness

import (
	"fmt"
	"net/http"
	"time"
)

// Mode selects how closely the function URL front end reproduces what AWS
// does to a RESPONSE_STREAM function URL's responses.
type Mode int

const (
	// Faithful, the default, reproduces what AWS is documented or reported
	// to do to streamed responses (see the constants below): the function's
	// Content-Length is renamed and the body is sent chunked, a body past its
	// first 6 MB is throttled, and a body past the size cap is cut off.
	Faithful Mode = iota
	// Permissive passes the function's Content-Length through and streams
	// bodies of any size at full speed: kinder than AWS. A mirror must work
	// under both modes, since AWS may change.
	Permissive
)

func (m Mode) String() string {
	switch m {
	case Faithful:
		return "faithful"
	case Permissive:
		return "permissive"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

const (
	// remappedContentLength is where a RESPONSE_STREAM function URL puts the
	// Content-Length a function set: the client gets the body chunked, with
	// no Content-Length, so a HEAD answer carries no length at all. Reported
	// in cargo-lambda/cargo-lambda#862 (the same binary "works on AWS,
	// except the header becomes x-amzn-remapped-content-length") and
	// aws/aws-lambda-go#577; API Gateway remaps the same way.
	remappedContentLength = "X-Amzn-Remapped-Content-Length"

	// streamBurst and streamRate: "The streaming rate for the first 6 MB of
	// your function's response is uncapped. [...] After this initial burst,
	// Lambda streams your response at a maximum rate of 2 MBps."
	// (https://docs.aws.amazon.com/lambda/latest/dg/configuration-response-streaming.html,
	// "Bandwidth limits for response streaming").
	streamBurst = 6 << 20
	streamRate  = 2 << 20 // bytes per second, before Options.StreamSpeedup

	// DefaultMaxResponseSize is the cap on a streamed response body:
	// "RESPONSE_STREAM [...] The maximum response payload size is 200 MB."
	// (https://docs.aws.amazon.com/lambda/latest/dg/config-rs-invoke-furls.html).
	// AWS documents no graceful ending for a stream that goes past it; the
	// harness cuts the client's connection, so the client sees a truncated
	// chunked body rather than a complete one.
	DefaultMaxResponseSize = 200 << 20
)

// faithful reports whether res gets AWS's treatment of streamed responses.
// Buffered responses (a LambdaFunctionURLResponse) keep their length: AWS
// knows it, and they are capped at 6 MB when they arrive (maxBufferedPayload).
func (h *Harness) faithful(res *result) bool {
	return h.mode == Faithful && res.consumed != nil
}

// remapContentLength moves a Content-Length the function set to
// remappedContentLength, as AWS does for streamed responses.
func remapContentLength(hdr http.Header) {
	if vv, ok := hdr["Content-Length"]; ok {
		delete(hdr, "Content-Length")
		hdr[remappedContentLength] = vv
	}
}

// pacer throttles a streamed body the way AWS does after its burst. It
// counts what was sent and, past the burst, sleeps until the bytes beyond
// it have taken at least their time at the rate.
type pacer struct {
	burst int64
	rate  float64 // bytes per second; 0 means no throttle
	sent  int64
	past  time.Time // when the burst was used up
}

// newPacer returns the pacer for one response: none in Permissive mode or
// for buffered responses.
func (h *Harness) newPacer(res *result) *pacer {
	if !h.faithful(res) {
		return &pacer{}
	}
	return &pacer{burst: streamBurst, rate: streamRate * h.speedup}
}

// wrote records n more bytes written and sleeps as the rate demands. Each
// sleep is at most one write's worth of time (a 64 KiB buffer takes 32 ms at
// 2 MB/s), so it needs no cancellation of its own.
func (p *pacer) wrote(n int) {
	p.sent += int64(n)
	if p.rate == 0 || p.sent <= p.burst {
		return
	}
	if p.past.IsZero() {
		p.past = time.Now()
	}
	due := p.past.Add(time.Duration(float64(p.sent-p.burst) / p.rate * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		time.Sleep(d)
	}
}
