package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// pullRun is one round of a contender on fresh state.
type pullRun struct {
	ColdImage pullResult `json:"coldImage"`
	ColdIndex pullResult `json:"coldIndex"`
	WarmImage pullResult `json:"warmImage"`
	WarmIndex pullResult `json:"warmIndex"`
	// RestartImage is a warm pull from a new process over the same S3
	// prefix: everything is in S3, nothing in the process's memory. This is
	// what most Lambda invocations after a scale-out see.
	RestartImage pullResult `json:"restartImage"`
	// Requests that reached the upstream, by "METHOD kind".
	UpstreamColdImage    map[string]int `json:"upstreamColdImage"`
	UpstreamWarmImage    map[string]int `json:"upstreamWarmImage"`
	UpstreamRestartImage map[string]int `json:"upstreamRestartImage"`
	// S3 requests by operation; "presigned GET" is the client following
	// a redirect, everything else the mirror's own calls.
	S3ColdImage    map[string]int `json:"s3ColdImage,omitempty"`
	S3WarmImage    map[string]int `json:"s3WarmImage,omitempty"`
	S3RestartImage map[string]int `json:"s3RestartImage,omitempty"`
	PeakRSS        int64          `json:"peakRssBytes,omitempty"`
	// CPU time (user + system) the mirror process and the S3 server spent
	// during the cold image pull: on a machine of few cores the fill's
	// own work and the S3 server's compete with the client's stream.
	ColdImageCPU   time.Duration `json:"coldImageCpuNs,omitempty"`
	ColdImageS3CPU time.Duration `json:"coldImageS3CpuNs,omitempty"`
	// LogErrors are the error-level lines the mirror logged this round.
	LogErrors []string      `json:"logErrors,omitempty"`
	Ready     time.Duration `json:"readyNs,omitempty"`
}

type contenderResult struct {
	contender
	Runs []pullRun `json:"runs"`
}

// Between phases the mirror's S3 traffic must have stopped for settleIdle
// (bounded by settleMax), so each phase is charged for its own requests.
const (
	settleIdle = 300 * time.Millisecond
	settleMax  = 10 * time.Second
)

// measurePulls runs p.Runs rounds: a fresh instance, a cold pull of the
// image and of the index, a warm pull of each, the process's peak RSS;
// then a new process over the same S3 state pulls the image once more.
func measurePulls(ctx context.Context, t *testing.T, e *benchEnv, c contender) contenderResult {
	t.Helper()
	res := contenderResult{contender: c}
	for run := range e.p.Runs {
		var r pullRun
		phase := func(inst *instance, repoRef string, want v1.Hash, dst *pullResult, up, s3 *map[string]int) {
			t.Helper()
			e.up.Reset()
			if inst.s3 != nil {
				inst.s3.Reset()
			}
			pr, err := pull(ctx, inst.base, repoRef, want, e.p.PullParallel)
			if err != nil {
				out := ""
				if inst.proc != nil {
					out = tail(inst.proc.Output(), 30)
				}
				t.Fatalf("%s run %d: pull %s: %v\n%s", c.Key, run, repoRef, err, out)
			}
			*dst = pr
			if inst.s3 != nil {
				inst.s3.settle(settleIdle, settleMax)
			}
			if up != nil {
				*up = upstreamCounts(e)
			}
			if s3 != nil && inst.s3 != nil {
				*s3 = inst.s3.Reset()
			}
		}
		inst := c.start(t, run)
		r.Ready = inst.ready
		var cpu0, s3CPU0 time.Duration
		if inst.proc != nil {
			cpu0, s3CPU0 = cpuTime(t, inst.proc), cpuTime(t, e.s3.Proc)
		}
		phase(inst, imageRef, e.imageDigest, &r.ColdImage, &r.UpstreamColdImage, &r.S3ColdImage)
		if inst.proc != nil {
			r.ColdImageCPU, r.ColdImageS3CPU = cpuTime(t, inst.proc)-cpu0, cpuTime(t, e.s3.Proc)-s3CPU0
		}
		phase(inst, indexRef, e.indexDigest, &r.ColdIndex, nil, nil)
		phase(inst, imageRef, e.imageDigest, &r.WarmImage, &r.UpstreamWarmImage, &r.S3WarmImage)
		phase(inst, indexRef, e.indexDigest, &r.WarmIndex, nil, nil)
		if inst.proc != nil {
			rss, err := peakRSS(inst.proc)
			if err != nil {
				t.Fatalf("%s run %d: %v", c.Key, run, err)
			}
			r.PeakRSS = rss
		}
		inst.close()
		if inst.proc != nil {
			r.LogErrors = errorLines(inst.proc.Output())
		}

		again := c.start(t, run) // same run, same S3 prefix or root directory
		phase(again, imageRef, e.imageDigest, &r.RestartImage, &r.UpstreamRestartImage, &r.S3RestartImage)
		again.close()
		if again.proc != nil {
			r.LogErrors = append(r.LogErrors, errorLines(again.proc.Output())...)
		}
		for i, l := range r.LogErrors {
			if i == 3 {
				t.Logf("%s run %d: … %d more error lines in report.json", c.Key, run+1, len(r.LogErrors)-i)
				break
			}
			t.Logf("%s run %d logged: %s", c.Key, run+1, l)
		}

		t.Logf("%-12s run %d: cold %5.2fs (CPU mirror %4.2fs, S3 server %4.2fs) warm %5.2fs new-process %5.2fs, index cold %5.2fs warm %5.2fs, peak RSS %s, S3 calls cold/warm/new-process %d/%d/%d",
			c.Key, run+1, r.ColdImage.Duration.Seconds(), r.ColdImageCPU.Seconds(), r.ColdImageS3CPU.Seconds(), r.WarmImage.Duration.Seconds(), r.RestartImage.Duration.Seconds(),
			r.ColdIndex.Duration.Seconds(), r.WarmIndex.Duration.Seconds(), mibString(r.PeakRSS),
			apiCalls(r.S3ColdImage), apiCalls(r.S3WarmImage), apiCalls(r.S3RestartImage))
		res.Runs = append(res.Runs, r)
	}
	return res
}

// errorLines picks the error-level lines (JSON slog, logrus text) and
// panics out of a process's output.
func errorLines(out string) []string {
	var lines []string
	for l := range strings.SplitSeq(out, "\n") {
		if strings.Contains(l, `"level":"ERROR"`) || strings.Contains(l, `"level":"error"`) ||
			strings.Contains(l, "level=error") || strings.Contains(l, "level=fatal") || strings.HasPrefix(l, "panic:") {
			lines = append(lines, l)
		}
	}
	return lines
}

// upstreamCounts snapshots the upstream wrapper's counters.
func upstreamCounts(e *benchEnv) map[string]int {
	m := map[string]int{}
	for _, method := range []string{"GET", "HEAD"} {
		for _, kind := range []string{"blob", "manifest", "tags", "token", "other"} {
			if n := e.up.Count(method, kind); n > 0 {
				m[method+" "+kind] = n
			}
		}
	}
	return m
}
