package lambdaharness

import (
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// invocation is one function URL request, or one call of the Invoke API, on
// its way through the runtime.
//
// Life cycle (state is guarded by Harness.mu):
//
//	queued --(GET next)--> delivered --(POST response/error)--> responded
//	   |                      |   ^                                 |
//	   |                      |   +-- requeued if delivery failed   |
//	   +----------------------+---------------------------------> finished
//
// The handler (or, for an asynchronous invocation, the goroutine) that created
// the invocation owns it: it always calls finish, and only then frees the
// execution slot it holds.
type invocation struct {
	id       string
	traceID  string
	event    []byte
	deadline time.Time
	result   chan *result  // buffered(1); receives exactly one result
	finished chan struct{} // closed by finish

	// direct marks an Invoke API invocation: the Runtime API reads the
	// function's whole answer into result.payload or result.fnErr instead of
	// handing a stream to a function URL client.
	direct bool

	state     invState
	abandoned bool // the HTTP client went away after delivery
}

type invState int

const (
	stateQueued invState = iota
	stateDelivered
	stateResponded
	stateFinished
)

// result is what the function (or the harness) answered for an invocation.
type result struct {
	status  int
	header  http.Header
	cookies []string
	body    io.Reader // nil for no body

	// For bodies streamed from a Runtime API request: the front end closes
	// consumed once it has read body to the end (or given up), which lets the
	// Runtime API handler acknowledge the response. conn is the Runtime API
	// connection the response arrived on.
	consumed chan struct{}
	conn     *connInfo

	// dropped: the client went away and the invocation was never run.
	dropped bool

	// For direct (Invoke API) invocations: the function's response payload,
	// or the error it (or the harness on its behalf) reported.
	payload []byte
	fnErr   *FunctionError
}

// textResult is a short plain-text response made up by the harness.
func textResult(status int, msg string) *result {
	return &result{
		status: status,
		header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
		body:   strings.NewReader(msg + "\n"),
	}
}

var (
	errClosed    = errors.New("lambdaharness: closed")
	errInitError = errors.New("lambdaharness: function failed to initialize")
	errDropped   = errors.New("lambdaharness: invocation dropped: its client went away before delivery")
)

// enqueue registers inv and queues it for delivery.
func (h *Harness) enqueue(inv *invocation) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return errClosed
	}
	if h.initErr != nil {
		return errInitError
	}
	inv.state = stateQueued
	h.inflight[inv.id] = inv
	h.queue = append(h.queue, inv)
	h.notifyLocked()
	return nil
}

// dequeue takes the oldest queued invocation and marks it delivered.
// h.mu must be held.
func (h *Harness) dequeueLocked() *invocation {
	if len(h.queue) == 0 {
		return nil
	}
	inv := h.queue[0]
	h.queue[0] = nil
	h.queue = h.queue[1:]
	inv.state = stateDelivered
	return inv
}

// requeue puts back an invocation whose delivery to the runtime failed, so it
// is not lost; if its client has meanwhile gone away it is dropped instead.
func (h *Harness) requeue(inv *invocation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if inv.state != stateDelivered {
		return
	}
	if inv.abandoned {
		inv.state = stateResponded
		inv.result <- &result{dropped: true}
		return
	}
	inv.state = stateQueued
	h.queue = slices.Insert(h.queue, 0, inv)
	h.notifyLocked()
}

// cancelIfQueued is called when inv's client went away. It reports whether the
// invocation was still queued (and so can simply be dropped). Otherwise the
// runtime already has it, and the front end must still consume its response.
func (h *Harness) cancelIfQueued(inv *invocation) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch inv.state {
	case stateQueued:
		h.finishLocked(inv)
		return true
	case stateDelivered:
		inv.abandoned = true
	}
	return false
}

// lookup returns the delivered, not yet answered invocation with the given ID.
func (h *Harness) lookup(id string) (*invocation, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	inv, ok := h.inflight[id]
	if !ok || inv.state != stateDelivered {
		return nil, false
	}
	return inv, true
}

// handover passes the function's answer to the waiting front end. It fails if
// the invocation is no longer waiting for one (timed out, already answered).
func (h *Harness) handover(inv *invocation, res *result) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if inv.state != stateDelivered {
		return false
	}
	inv.state = stateResponded
	inv.result <- res
	return true
}

// finish retires inv; it is idempotent.
func (h *Harness) finish(inv *invocation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.finishLocked(inv)
}

func (h *Harness) finishLocked(inv *invocation) {
	if inv.state == stateFinished {
		return
	}
	if inv.state == stateQueued {
		if i := slices.Index(h.queue, inv); i >= 0 {
			h.queue = slices.Delete(h.queue, i, i+1)
		}
	}
	inv.state = stateFinished
	delete(h.inflight, inv.id)
	close(inv.finished)
}

// failInit records an init error and fails every queued invocation.
func (h *Harness) failInit(fe *FunctionError) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.initErr = fe
	for _, inv := range h.queue {
		inv.state = stateResponded
		if inv.direct {
			inv.result <- &result{fnErr: fe}
		} else {
			inv.result <- textResult(http.StatusBadGateway, "lambdaharness: function failed to initialize")
		}
	}
	clear(h.queue)
	h.queue = h.queue[:0]
	h.notifyLocked()
}

// initError returns the error recorded by POST /runtime/init/error, if any.
func (h *Harness) initError() *FunctionError {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.initErr
}

// nextCallsNow returns the number of GET next requests received so far.
func (h *Harness) nextCallsNow() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.nextCalls
}
