package fill

import (
	"net/http"
	"time"

	"github.com/pullthrough/pullthrough/internal/oci"
)

// DefaultMaxFills bounds the blob fills one process runs at once. Each
// holds an upstream connection and, with the S3 store, up to
// S3 upload concurrency + 1 part buffers (5 × 8 MiB by default).
const DefaultMaxFills = 16

// fillSlots bounds the fills a process runs at once, detached ones (whose
// clients left) included, so memory and upstream connections stay bounded
// whatever clients do. A fill beyond it is refused at once with 503 and
// Retry-After rather than queued: a queue would hold the request as long.
type fillSlots chan struct{}

// take claims a slot; ok is false when all are in use.
func (s fillSlots) take() (done func(), ok bool) {
	select {
	case s <- struct{}{}:
		return func() { <-s }, true
	default:
		return nil, false
	}
}

func errFillCapacity() *oci.Error {
	return errCapacity.After(5 * time.Second)
}

// errCapacity is the refusal of a fill past the process's bound, a 503
// of its own identity (errors.Is) so that it is not counted as a failure.
var errCapacity = &oci.Error{Code: "UNAVAILABLE", Status: http.StatusServiceUnavailable, Message: "the mirror is fetching as many blobs as it may at once; retry shortly"}
