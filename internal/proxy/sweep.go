package proxy

import (
	"context"

	"github.com/pullthrough/pullthrough/internal/sweep"
)

// The sweep is package sweep's; these names keep the proxy's API whole for
// the binary and its tests.
type (
	SweepOptions = sweep.Options
	SweepReport  = sweep.Report
	Lister       = sweep.Lister
	Deleter      = sweep.Deleter
	ObjectInfo   = sweep.ObjectInfo
)

// MinRetention is the shortest retention a sweep accepts (sweep.MinRetention).
const MinRetention = sweep.MinRetention

// Sweep runs sweep.Run over the proxy's store by the proxy's clock, and
// forgets what it deleted from this process's memos.
func (p *Proxy) Sweep(ctx context.Context, opt SweepOptions) (SweepReport, error) {
	opt.Now, opt.Log, opt.Forget = p.now, p.log, p.cache.Forget
	opt.MaxManifestSize = p.cfg.MaxManifestSize
	return sweep.Run(ctx, p.store, opt)
}
