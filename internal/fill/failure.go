package fill

import (
	"context"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/pullthrough/pullthrough/internal/cache"
	"github.com/pullthrough/pullthrough/internal/oci"
)

// A fill that runs in an invocation of its own (Lambda) fails out of sight
// of the requests waiting for its blob. Its failure is logged with the
// FillFailures metric (by the caller of Run) and recorded in the store (RecordFailure), where the waiters look for
// it between polls, so they stop waiting as soon as it is known. An
// invocation that is killed (timed out) records nothing: its waiters poll
// until FillWait, and Lambda's own Errors metric shows it.

// RecordFailure records in the store that a background fill of b failed
// now, for the requests waiting for its blob (waitForBlob).
func (e *Engine) RecordFailure(ctx context.Context, b Blob) error {
	return e.cache.SaveJSON(ctx, cache.FillFailureKey(b.Digest), cache.FillFailure{At: e.cache.Now()})
}

// failedSince reports whether a background fill of d failed at or after
// since.
func (e *Engine) failedSince(ctx context.Context, d digest.Digest, since time.Time) bool {
	var f cache.FillFailure
	return e.cache.LoadJSON(ctx, cache.FillFailureKey(d), &f) == nil && !f.At.Before(since)
}

func errFillFailed() *oci.Error {
	return retryLater("fetching the blob from upstream failed; retry")
}
