package fill

import "time"

// Large-blob policies: what a GET miss does when a fill may outlast the
// client's patience (or a Lambda invocation).
const (
	PolicyWait     = "wait"              // fill, then redirect to the store
	PolicyUpstream = "redirect-upstream" // send the client to the upstream's signed blob URL, fill in the background
	PolicyAuto     = "auto"              // redirect-upstream for blobs too slow to wait for (see redirectPays), else wait
)

// streamLimit is the largest blob a request-bound (Lambda) fill streams to
// its client while filling: a function URL in RESPONSE_STREAM mode sends
// the first 6 MB of a response uncapped and the rest at about 2 MB/s
// (docs.aws.amazon.com/lambda/latest/dg/configuration-response-streaming.html,
// modelled by internal/lambdaharness). Taken as 6,000,000 bytes, below both
// readings of "6 MB", with room for the prelude.
const streamLimit = 6_000_000 - 64<<10

// autoWaitBudget is how long PolicyAuto lets a client wait, with no bytes,
// for a fill it could instead fetch from the upstream's CDN itself. A
// redirect costs a second upstream download (the background fill's); a
// wait costs the client the fill time before its first byte. Past this
// budget the client risks its own timeouts (containerd gives up on a
// download that makes no progress for about 5 minutes; dockerd retries),
// so the redirect is worth its download.
const autoWaitBudget = 30 * time.Second

// fillPlan is how a missing blob gets into the store.
type fillPlan int

const (
	// planInline fills in this process while the caller waits (in the
	// local server for at most FillWait, the fill carrying on).
	planInline fillPlan = iota
	// planBackground hands the fill to a fill of its own outside the
	// request (in Lambda an asynchronous invocation of the function);
	// a client waits for the blob to appear in the store.
	planBackground
	// planRedirect sends the client to the upstream's own blob URL and
	// fills in the background.
	planRedirect
	// planAskSize learns the blob's size from the upstream (a HEAD) before
	// deciding: only where the size can change the answer.
	planAskSize
	// planStream fills in this process and streams the bytes to the client
	// as they arrive (through a spool, spool.go); other requests for the
	// blob join the stream. The blob is still published only once its
	// digest and length check out.
	planStream
)

func (pl fillPlan) String() string {
	return [...]string{"inline", "background", "redirect", "ask-size", "stream"}[pl]
}

// fillLimits are the policy and what the environment allows a fill. They
// are fixed when the engine is built (New).
type fillLimits struct {
	policy    string // PolicyWait, PolicyUpstream or PolicyAuto
	largeSize int64  // bytes: PolicyAuto's threshold, and the largest fill a bound request may run
	// requestBound is true where nothing may outlive a request (Lambda
	// freezes the environment after the response): a fill of largeSize or
	// more is then handed to a background fill rather than risk the
	// invocation's end. False in the local server, where a fill runs in a
	// goroutine of its own and outlives the requests waiting for it.
	requestBound bool
}

// fillFacts are what is known about one fill when it is planned. A caller
// plans again as it learns more: the size from a HEAD or from the GET's
// Content-Length, or that a redirect is no longer possible.
type fillFacts struct {
	size int64 // bytes; -1 while unknown
	// redirectable: a client's blob GET waits and can still be sent to the
	// upstream (no upstream body was opened for it and the upstream did not
	// refuse to name a blob URL). False for warms and background fills.
	redirectable bool
	background   bool // this fill already runs outside any request (RunFill, or the local server's goroutine)
	cdn          bool // the upstream was seen to redirect blob GETs to another host
	// streamable: a client's whole-blob GET waits and can take the bytes
	// as they arrive (not a Range request, not a warm).
	streamable bool
	// rate is this upstream's measured fill throughput in bytes per second
	// (upstream.Facts.FillRate); 0 until a fill was measured.
	rate float64
}

// redirectPays is PolicyAuto's choice for a CDN upstream: redirect when a
// fill of f.size at the measured fill rate would keep the client waiting
// past autoWaitBudget. Before any fill was measured, LargeBlobSize stands
// in for the rate.
func redirectPays(lim fillLimits, f fillFacts) bool {
	if f.rate > 0 {
		return float64(f.size) > f.rate*autoWaitBudget.Seconds()
	}
	return f.size >= lim.largeSize
}

// planFill decides how a missing blob is filled. It is the one place that
// weighs the large-blob policy against the environment; blob GETs, Warm and
// RunFill all follow it.
func planFill(lim fillLimits, f fillFacts) fillPlan {
	if f.background {
		return planInline
	}
	if f.redirectable {
		switch {
		case lim.policy == PolicyUpstream:
			return planRedirect
		case lim.policy == PolicyAuto && f.cdn && f.size < 0:
			// The size costs a HEAD (free on Docker Hub): ask only an
			// upstream with a CDN to send clients to.
			return planAskSize
		case lim.policy == PolicyAuto && f.cdn && redirectPays(lim, f):
			return planRedirect
		}
	}
	if lim.requestBound && f.size >= lim.largeSize {
		return planBackground
	}
	// In the local server a stream has no cap; in Lambda only a known size
	// inside the uncapped part of a streamed response (else the plain GET
	// is opened first, and the plan asked again with its Content-Length).
	if f.streamable && (!lim.requestBound || (f.size >= 0 && f.size < streamLimit)) {
		return planStream
	}
	return planInline
}
