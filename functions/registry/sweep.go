package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/pullthrough/pullthrough/internal/proxy"
)

// parseRetention reads PULLTHROUGH_RETENTION: whole days ("30d") or a Go
// duration ("720h").
func parseRetention(v string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.Atoi(days)
		// More days than a time.Duration holds would wrap around.
		if err != nil || n < 0 || int64(n) > int64(math.MaxInt64/(24*time.Hour)) {
			return 0, fmt.Errorf("bad day count %q", v)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(v)
}

var errSweepDisabled = errors.New("the sweep is disabled: set PULLTHROUGH_RETENTION (e.g. 30d)")

// sweepCommand is `pullthrough sweep [--dry-run]`: delete what no tag or
// digest pulled within the retention uses, printing each object.
func sweepCommand(ctx context.Context, p *proxy.Proxy, retention time.Duration, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("sweep", flag.ContinueOnError)
	dry := fs.Bool("dry-run", false, "print what would be deleted and the bytes freed; delete nothing")
	fs.SetOutput(out)
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	if fs.NArg() != 0 {
		return usageError{"usage: pullthrough sweep [--dry-run]"}
	}
	if retention == 0 {
		return errSweepDisabled
	}
	rep, err := p.Sweep(ctx, proxy.SweepOptions{Retention: retention, DryRun: *dry, Out: out})
	if err != nil {
		return err
	}
	verb := "deleted"
	if *dry {
		verb = "would delete"
	}
	fmt.Fprintf(out, "%s %d objects, %d bytes freed; kept %d; %d objects listed, %d records read\n",
		verb, rep.Deleted, rep.BytesFreed, rep.Kept, rep.Listed, rep.Read)
	return nil
}

// sweepEvent is what the schedule (infra/terraform/sweep.tf) sends the
// function: {"sweep":{"dryRun":false}}. Function URL requests and fill
// events never have a "sweep" key.
type sweepEvent struct {
	Sweep *struct {
		DryRun bool `json:"dryRun"`
	} `json:"sweep"`
}

// runSweepEvent runs a scheduled sweep inside the function.
func runSweepEvent(ctx context.Context, p *proxy.Proxy, retention time.Duration, ev sweepEvent) (proxy.SweepReport, error) {
	if retention == 0 {
		return proxy.SweepReport{}, errSweepDisabled
	}
	return p.Sweep(ctx, proxy.SweepOptions{Retention: retention, DryRun: ev.Sweep.DryRun})
}
