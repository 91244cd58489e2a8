package proxy

import (
	"context"
	"errors"
	"time"

	"github.com/opencontainers/go-digest"
)

// A fill that runs in an invocation of its own (Lambda) fails out of sight
// of the requests waiting for its blob. Its failure is logged with the
// FillFailures metric and recorded in the store, where the waiters look for
// it between polls, so they stop waiting as soon as it is known. An
// invocation that is killed (timed out) records nothing: its waiters poll
// until FillWait, and Lambda's own Errors metric shows it.

// noteFillFailure makes a failed background fill visible: one log line,
// which in Lambda also carries the FillFailures metric, and a record in
// the store for waiters. A fill that gave up waiting for another
// instance's lease has not failed.
func (p *Proxy) noteFillFailure(ctx context.Context, rt route, err error) {
	if errors.Is(err, ErrFillPending) {
		return
	}
	attrs := []any{"digest", rt.digest.String(), "name", rt.name, "cause", errString(err), "FillFailures", 1}
	if p.cfg.EmbeddedMetrics {
		attrs = emfAttrs(attrs, rt.up.Host(), p.cfg.MetricsFunction, []emfMetric{{"FillFailures", "Count"}}, p.now())
	}
	p.log.Error("background fill failed", attrs...)
	if serr := p.cache.saveJSON(ctx, fillFailureKey(rt.digest), fillFailure{At: p.now()}); serr != nil {
		p.log.Warn("could not record a failed fill", "digest", rt.digest.String(), "cause", serr.Error())
	}
}

// fillFailedSince reports whether a background fill of d failed at or
// after since.
func (p *Proxy) fillFailedSince(ctx context.Context, d digest.Digest, since time.Time) bool {
	var f fillFailure
	return p.cache.loadJSON(ctx, fillFailureKey(d), &f) == nil && !f.At.Before(since)
}

func errFillFailed() *Error {
	return retryLater("fetching the blob from upstream failed; retry")
}
