package bench

import (
	"os"
	"runtime"
	"testing"
	"time"
)

// TestBench is the side-by-side benchmark behind `make bench`. It is the
// one test that skips by default: it takes minutes and gigabytes of disk,
// and `make test` must not run it.
func TestBench(t *testing.T) {
	if os.Getenv("PULLTHROUGH_BENCH") == "" {
		t.Skip("set PULLTHROUGH_BENCH=1 to run the benchmark (make bench)")
	}
	began, loadStart := time.Now(), loadAvg()
	ctx := benchCtx(t)
	p := loadParams(t)
	e := newBenchEnv(t, p)
	t.Logf("seeded in %s: image %d×%s, index %d platforms × %d×%s, blobs %s and %s",
		time.Since(began).Round(time.Second), p.Layers, mibString(p.LayerSize), p.IndexPlatforms, p.IndexLayers,
		mibString(p.IndexLayerSize), mibString(p.BigBlob), mibString(p.SmallBlob))

	rep := report{Params: p, CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Started: began.UTC(), LoadStart: loadStart}
	if p.runs("pulls") {
		for _, c := range e.contenders() {
			rep.Contenders = append(rep.Contenders, measurePulls(ctx, t, e, c))
		}
	}
	if p.runs("small") {
		rep.Small = measureSmallPull(ctx, t, e)
	}
	if p.runs("cri") {
		rep.CRI = measureCRIPull(ctx, t, e)
	}
	if p.runs("fill") {
		rep.Fill = measureFill(ctx, t, e)
	}
	if p.runs("parallel") {
		rep.Parallel = measureParallelFill(ctx, t, e)
	}
	if p.runs("coldstart") {
		rep.ColdStart = measureColdStart(t, e)
	}
	rep.Total = time.Since(began)
	rep.LoadEnd = loadAvg()

	md := rep.markdown()
	dir := writeReport(t, rep, md)
	t.Logf("report written to %s\n\n%s", dir, md)
	if !rep.memoryBoundOK() {
		t.Errorf("memory bound FAIL: peak RSS filling %s is %s, filling %s is %s; want at most %s more",
			mibString(p.BigBlob), mibString(median(rep.bigRSS())), mibString(p.SmallBlob), mibString(median(rep.smallRSS())), mibString(memorySlack))
	}
}

// measureColdStart starts each mirror p.ColdStarts times and records the
// time from starting the process to its first 200 on /v2/ (through the
// function URL stand-in for the bootstrap).
func measureColdStart(t *testing.T, e *benchEnv) map[string][]time.Duration {
	t.Helper()
	out := map[string][]time.Duration{}
	for _, c := range e.contenders() {
		if c.Key == "direct" {
			continue
		}
		for i := range e.p.ColdStarts {
			inst := c.start(t, 1000+i)
			inst.close()
			out[c.Key] = append(out[c.Key], inst.ready)
		}
		t.Logf("cold start   %-12s median %s", c.Key, median(out[c.Key]))
	}
	return out
}
