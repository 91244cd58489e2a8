package proxy

// Large-blob policies: what a GET miss does when a fill may outlast the
// client's patience (or a Lambda invocation).
const (
	PolicyWait     = "wait"              // fill, then redirect to the store
	PolicyUpstream = "redirect-upstream" // send the client to the upstream's signed blob URL, fill in the background
	PolicyAuto     = "auto"              // redirect-upstream for blobs of at least LargeBlobSize, else wait
)

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
)

func (pl fillPlan) String() string {
	return [...]string{"inline", "background", "redirect", "ask-size"}[pl]
}

// fillLimits are the policy and what the environment allows a fill. They
// are fixed when the proxy is built (see newFillLimits).
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

func newFillLimits(cfg Config) fillLimits {
	return fillLimits{policy: cfg.LargeBlobPolicy, largeSize: cfg.LargeBlobSize, requestBound: cfg.BackgroundFill != nil}
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
		case lim.policy == PolicyAuto && f.cdn && f.size >= lim.largeSize:
			return planRedirect
		}
	}
	if lim.requestBound && f.size >= lim.largeSize {
		return planBackground
	}
	return planInline
}
