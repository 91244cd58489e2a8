package proxy

import (
	"context"
	"errors"
	"fmt"

	"github.com/pullthrough/pullthrough/internal/fill"
	"github.com/pullthrough/pullthrough/internal/oci"
)

// The fill engine is package fill's; these names keep the proxy's API
// whole for the binary and its tests.
type (
	// FillJob is a blob fill to run outside the request that needed it:
	// in Lambda, an asynchronous invocation of the function itself (see
	// RunFill).
	FillJob = fill.Job
	// Leaser is implemented by stores with conditional writes; fills
	// take their leases with it (fill.Leaser).
	Leaser = fill.Leaser
)

// Large-blob policies (Config.LargeBlobPolicy): what a GET miss does when a
// fill may outlast the client's patience (or a Lambda invocation).
const (
	PolicyWait     = fill.PolicyWait
	PolicyUpstream = fill.PolicyUpstream
	PolicyAuto     = fill.PolicyAuto
)

// Defaults of the fill's bounds (Config.MaxFills, FillParts, FillPartSize,
// MaxBlobSize); package fill says why each is what it is.
const (
	DefaultMaxFills     = fill.DefaultMaxFills
	DefaultFillParts    = fill.DefaultFillParts
	DefaultFillPartSize = fill.DefaultFillPartSize
	DefaultMaxBlobSize  = fill.DefaultMaxBlobSize
)

// ErrFillPending is a 503 for a blob another request or instance is still
// fetching (fill.ErrPending).
var ErrFillPending = fill.ErrPending

// fillBlob names a route's blob for the fill engine.
func fillBlob(rt route) fill.Blob { return fill.Blob{Up: rt.up, Name: rt.name, Digest: rt.digest} }

// RunFill runs a FillJob (the Lambda handler calls it for the function's
// own asynchronous invocations). It validates the job like a request.
func (p *Proxy) RunFill(ctx context.Context, job FillJob) error {
	up, ok := p.lookup(job.Upstream)
	if !ok {
		return fmt.Errorf("fill job for unconfigured upstream %q", job.Upstream)
	}
	if err := validName(job.Name); err != nil {
		return err
	}
	if err := job.Digest.Validate(); err != nil {
		return err
	}
	rt := route{kind: routeBlob, name: job.Name, digest: job.Digest}
	if err := bind(&rt, up); err != nil {
		return err
	}
	err := fromUpstream(p.fills.Run(ctx, fillBlob(rt), job.Lease), oci.ErrBlobUnknown)
	if err != nil {
		p.noteFillFailure(ctx, rt, err)
	}
	return err
}

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
	if p.cfg.OnFillFailure != nil {
		p.cfg.OnFillFailure(rt.up.Host())
	}
	if serr := p.fills.RecordFailure(ctx, fillBlob(rt)); serr != nil {
		p.log.Warn("could not record a failed fill", "digest", rt.digest.String(), "cause", serr.Error())
	}
}
