package bench

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/store"
)

type report struct {
	Params     params                     `json:"params"`
	CPUs       int                        `json:"cpus"`
	GoVersion  string                     `json:"goVersion"`
	Started    time.Time                  `json:"started"`
	Contenders []contenderResult          `json:"contenders"`
	Fill       fillResult                 `json:"fill"`
	Parallel   parallelFillResult         `json:"parallelFill"`
	Small      smallPullResult            `json:"smallLayers"`
	CRI        criPullResult              `json:"criPull"`
	ColdStart  map[string][]time.Duration `json:"coldStartNs"`
	Total      time.Duration              `json:"totalNs"`
	// LoadStart and LoadEnd are /proc/loadavg's one-minute figure: on a
	// shared machine the numbers mean little if other work was running
	// before (LoadEnd includes the benchmark's own load).
	LoadStart float64 `json:"loadAvgStart"`
	LoadEnd   float64 `json:"loadAvgEnd"`
}

// loadAvg is the one-minute load average, or -1 if unknown.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	var l float64
	if _, err := fmt.Sscan(string(b), &l); err != nil {
		return -1
	}
	return l
}

func median[T cmp.Ordered](xs []T) T {
	var zero T
	if len(xs) == 0 {
		return zero
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	// For durations and counts alike: the lower middle, so an even number
	// of runs still reports a value that was measured.
	return s[len(s)/2-1]
}

func collect[T any](runs []pullRun, f func(pullRun) T) []T {
	out := make([]T, 0, len(runs))
	for _, r := range runs {
		out = append(out, f(r))
	}
	return out
}

func mibString(n int64) string {
	switch {
	case n == 0:
		return "–"
	case n >= gib && n%gib == 0:
		return fmt.Sprintf("%d GiB", n/gib)
	case n >= 10*mib:
		return fmt.Sprintf("%.0f MiB", float64(n)/mib)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/mib)
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

func (c contenderResult) med(f func(pullRun) time.Duration) time.Duration {
	return median(collect(c.Runs, f))
}

func s3Cold(r pullRun) map[string]int    { return r.S3ColdImage }
func s3Warm(r pullRun) map[string]int    { return r.S3WarmImage }
func s3Restart(r pullRun) map[string]int { return r.S3RestartImage }

// medianRun returns the operation counts of the run whose total is the
// median, so a breakdown shown next to a median adds up to it.
func medianRun(runs []pullRun, f func(pullRun) map[string]int) map[string]int {
	want := median(collect(runs, func(r pullRun) int { return apiCalls(f(r)) }))
	for _, r := range runs {
		if apiCalls(f(r)) == want {
			return f(r)
		}
	}
	return nil
}

func (rep report) find(key string) contenderResult {
	for _, c := range rep.Contenders {
		if c.Key == key {
			return c
		}
	}
	return contenderResult{}
}

func (rep report) bigRSS() []int64 {
	var out []int64
	for _, r := range rep.Fill.Runs {
		out = append(out, r.PeakRSSBig)
	}
	return out
}

func (rep report) smallRSS() []int64 {
	var out []int64
	for _, r := range rep.Fill.Runs {
		out = append(out, r.PeakRSSmall)
	}
	return out
}

func (rep report) memoryBoundOK() bool {
	return median(rep.bigRSS()) <= median(rep.smallRSS())+memorySlack
}

func (rep report) fillRatio() float64 {
	var plain, mirror []time.Duration
	for _, r := range rep.Fill.Runs {
		plain = append(plain, r.Plain)
		mirror = append(mirror, r.Mirror)
	}
	if median(mirror) == 0 {
		return 0
	}
	return median(plain).Seconds() / median(mirror).Seconds()
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// markdown renders the report as the README's benchmark section.
func (rep report) markdown() string {
	p := rep.Params
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	w("Image: %d layers × %s (%s); index: %d platforms × %d layers × %s. Median of %d runs; cold = fresh process and empty S3 prefix; warm = the next pull. Client: go-containerregistry `remote`, %d layers at a time, every byte read and digest-checked, redirects followed, no local cache. %d CPUs, %s, load average %.1f before the run.\n\n",
		p.Layers, mibString(p.LayerSize), mibString(int64(p.Layers)*p.LayerSize), p.IndexPlatforms, p.IndexLayers, mibString(p.IndexLayerSize),
		p.Runs, p.PullParallel, rep.CPUs, rep.GoVersion, rep.LoadStart)

	if len(rep.Contenders) > 0 {
		w("| |")
		for _, c := range rep.Contenders {
			w(" %s |", c.Label)
		}
		w("\n|---|")
		for range rep.Contenders {
			w("---:|")
		}
		w("\n")
		row := func(label string, cell func(c contenderResult) string) {
			w("| %s |", label)
			for _, c := range rep.Contenders {
				w(" %s |", cell(c))
			}
			w("\n")
		}
		dur := func(f func(pullRun) time.Duration) func(contenderResult) string {
			return func(c contenderResult) string { return secs(c.med(f)) }
		}
		coldImg := func(r pullRun) time.Duration { return r.ColdImage.Duration }
		warmImg := func(r pullRun) time.Duration { return r.WarmImage.Duration }
		row("cold pull, image", dur(coldImg))
		row("warm pull, image", dur(warmImg))
		row("warm pull, image, new process (cache only in S3)", dur(func(r pullRun) time.Duration { return r.RestartImage.Duration }))
		row("cold pull, index (all platforms)", dur(func(r pullRun) time.Duration { return r.ColdIndex.Duration }))
		row("warm pull, index (all platforms)", dur(func(r pullRun) time.Duration { return r.WarmIndex.Duration }))
		ratio := func(to string, f func(pullRun) time.Duration) func(contenderResult) string {
			return func(c contenderResult) string {
				base := rep.find(to)
				if !strings.HasPrefix(c.Key, "local") && !strings.HasPrefix(c.Key, "lambda") || base.Key == "" {
					return ""
				}
				return fmt.Sprintf("%.2f×", c.med(f).Seconds()/base.med(f).Seconds())
			}
		}
		row("cold pull time, ours ÷ distribution", ratio("distribution", coldImg))
		row("warm pull time, ours ÷ distribution", ratio("distribution", warmImg))
		row("cold pull time, ours ÷ direct", ratio("direct", coldImg))
		row("warm pull time, ours ÷ direct", ratio("direct", warmImg))
		row("CPU during the cold image pull: mirror process / S3 server", func(c contenderResult) string {
			if c.Key == "direct" {
				return ""
			}
			return fmt.Sprintf("%s / %s", secs(c.med(func(r pullRun) time.Duration { return r.ColdImageCPU })),
				secs(c.med(func(r pullRun) time.Duration { return r.ColdImageS3CPU })))
		})
		row("peak RSS of the mirror process (max)", func(c contenderResult) string {
			return mibString(slices.Max(collect(c.Runs, func(r pullRun) int64 { return r.PeakRSS })))
		})
		row("upstream blob requests, cold / warm image pull", func(c contenderResult) string {
			n := func(m map[string]int) int { return m["GET blob"] + m["HEAD blob"] }
			return fmt.Sprintf("%d / %d", median(collect(c.Runs, func(r pullRun) int { return n(r.UpstreamColdImage) })),
				median(collect(c.Runs, func(r pullRun) int { return n(r.UpstreamWarmImage) })))
		})
		row("upstream manifest requests, warm / new-process image pull", func(c contenderResult) string {
			n := func(m map[string]int) int { return m["GET manifest"] + m["HEAD manifest"] }
			return fmt.Sprintf("%d / %d", median(collect(c.Runs, func(r pullRun) int { return n(r.UpstreamWarmImage) })),
				median(collect(c.Runs, func(r pullRun) int { return n(r.UpstreamRestartImage) })))
		})
		row("S3 requests by the mirror, cold / warm / new-process image pull", func(c contenderResult) string {
			if c.Key == "direct" {
				return ""
			}
			n := func(f func(pullRun) map[string]int) int {
				return median(collect(c.Runs, func(r pullRun) int { return apiCalls(f(r)) }))
			}
			return fmt.Sprintf("%d / %d / %d", n(s3Cold), n(s3Warm), n(s3Restart))
		})
		row("client GETs of presigned S3 URLs, cold / warm image pull", func(c contenderResult) string {
			if c.Key == "direct" {
				return ""
			}
			return fmt.Sprintf("%d / %d", median(collect(c.Runs, func(r pullRun) int { return presignedCalls(r.S3ColdImage) })),
				median(collect(c.Runs, func(r pullRun) int { return presignedCalls(r.S3WarmImage) })))
		})
		row(fmt.Sprintf("cold start to first 200 on /v2/ (median of %d)", p.ColdStarts), func(c contenderResult) string {
			if d := rep.ColdStart[c.Key]; len(d) > 0 {
				return ms(median(d))
			}
			return ""
		})

		w("\n| S3 operations by the mirror per image pull (median run) | cold | warm | warm, new process |\n|---|---|---|---|\n")
		for _, c := range rep.Contenders {
			if c.Key == "direct" {
				continue
			}
			w("| %s | %s | %s | %s |\n", c.Label, opSummary(medianRun(c.Runs, s3Cold)), opSummary(medianRun(c.Runs, s3Warm)), opSummary(medianRun(c.Runs, s3Restart)))
		}
	}

	if len(rep.Fill.Runs) > 0 {
		var plain, plainPar, plainVer, mirror, mirrorClient, mirrorCPU, plainS3CPU, mirrorS3CPU []time.Duration
		for _, r := range rep.Fill.Runs {
			plain = append(plain, r.Plain)
			plainPar = append(plainPar, r.PlainParallel)
			plainVer = append(plainVer, r.PlainVerified)
			mirror = append(mirror, r.Mirror)
			mirrorClient = append(mirrorClient, r.MirrorClient)
			mirrorCPU = append(mirrorCPU, r.MirrorCPU)
			plainS3CPU = append(plainS3CPU, r.PlainS3CPU)
			mirrorS3CPU = append(mirrorS3CPU, r.MirrorS3CPU)
		}
		mbps := func(d time.Duration) string {
			return fmt.Sprintf("%.0f MiB/s", float64(rep.Fill.BigBlob)/mib/d.Seconds())
		}
		big, small := median(rep.bigRSS()), median(rep.smallRSS())
		w("\n| Fill of one %s blob (median of %d) | |\n|---|---:|\n", mibString(rep.Fill.BigBlob), len(rep.Fill.Runs))
		w("| plain copy: GET upstream → S3 multipart, 8 MiB parts, one at a time | %s (%s) |\n", secs(median(plain)), mbps(median(plain)))
		w("| plain copy, %d parts in flight (the mirror's default) | %s (%s) |\n", store.DefaultUploadConcurrency, secs(median(plainPar)), mbps(median(plainPar)))
		w("| plain copy, %d parts in flight, also SHA-256-verifying the bytes before completing | %s (%s) |\n", store.DefaultUploadConcurrency, secs(median(plainVer)), mbps(median(plainVer)))
		w("| pullthrough cold fill: blob GET (streamed while filling) until the blob is in S3 | %s (%s) |\n", secs(median(mirror)), mbps(median(mirror)))
		w("| the same GET until the client's last byte (sent once the bytes are verified, before the publish) | %s (%s) |\n", secs(median(mirrorClient)), mbps(median(mirrorClient)))
		w("| CPU during the fill: pullthrough process / versitygw (plain copy: versitygw) | %s / %s (%s) |\n", secs(median(mirrorCPU)), secs(median(mirrorS3CPU)), secs(median(plainS3CPU)))
		w("| fill throughput, ours ÷ plain copy one part at a time (target ≥ 0.90) | %.3f %s |\n", rep.fillRatio(), passFail(rep.fillRatio() >= 0.9))
		w("| fill throughput, ours ÷ plain copy %d parts in flight | %.3f |\n", store.DefaultUploadConcurrency, median(plainPar).Seconds()/median(mirror).Seconds())
		w("| fill throughput, ours ÷ verifying plain copy, %d parts in flight | %.3f |\n", store.DefaultUploadConcurrency, median(plainVer).Seconds()/median(mirror).Seconds())
		w("| peak RSS filling %s / %s | %s / %s |\n", mibString(rep.Fill.BigBlob), mibString(rep.Fill.SmallBlob), mibString(big), mibString(small))
		w("| memory bound: peak(%s) ≤ peak(%s) + 64 MiB + parallel fill parts (32 MiB) | %s |\n", mibString(rep.Fill.BigBlob), mibString(rep.Fill.SmallBlob), passFail(rep.memoryBoundOK()))
	}
	if sm := rep.Small; len(sm.Cold) > 0 {
		direct := median(sm.Cold["direct"])
		w("\n| Cold pull of an image of %d layers × %s (each under 6 MB; median of %d) | time | ÷ direct (target ≤ 2×) |\n|---|---:|---:|\n", sm.Layers, mibString(sm.LayerSize), len(sm.Cold["direct"]))
		for _, way := range smallWays {
			d := median(sm.Cold[way.key])
			w("| %s | %s | %.2f× |\n", way.label, secs(d), d.Seconds()/direct.Seconds())
		}
	}
	if c := rep.CRI; len(c.Total["direct"]) > 0 {
		w("\n| Cold pull by the CRI path: crictl → containerd 2.4 transfer service, %s layer chunks, %d downloads at a time; %d layers × %s (median of %d) | first layer byte | total | layer GETs sent | upstream blob GETs |\n|---|---:|---:|---:|---:|\n",
			mibString(criChunk), criDownloads, c.Layers, mibString(c.LayerSize), len(c.Total["direct"]))
		for _, way := range criWays {
			w("| %s | %s | %s | %d | %d |\n", way.label, ms(median(c.FirstByte[way.key])), secs(median(c.Total[way.key])), median(c.LayerGETs[way.key]), median(c.Upstream[way.key]))
		}
		ratio := func(m map[string][]time.Duration) float64 {
			return median(m["local"]).Seconds() / median(m["direct"]).Seconds()
		}
		w("| ours ÷ direct | %.2f× | %.2f× | | |\n", ratio(c.FirstByte), ratio(c.Total))
	}
	if pf := rep.Parallel; len(pf.Single) > 0 {
		single, par := median(pf.Single), median(pf.Parallel)
		w("\n| Cold fill of %s from an upstream capped at %s/s per connection (median of %d) | |\n|---|---:|\n", mibString(pf.Blob), mibString(pf.CapRate), len(pf.Single))
		w("| one stream (`PULLTHROUGH_FILL_PARTS=1`), until in S3 | %s |\n", secs(single))
		w("| parallel ranged GETs (%d × %s), until in S3 | %s |\n", pf.Parts, mibString(pf.PartSize), secs(par))
		w("| speed-up, parallel ÷ one stream (target ≥ 2.5×) | %.2f× |\n", single.Seconds()/par.Seconds())
		sc, pc := median(pf.SingleClient), median(pf.ParallelClient)
		w("| the same, until the client's last byte: one stream / parallel / speed-up | %s / %s / %.2f× |\n", secs(sc), secs(pc), sc.Seconds()/pc.Seconds())
	}
	w("\nTotal benchmark time: %s.\n", rep.Total.Round(time.Second))
	return b.String()
}

// writeReport writes report.md and report.json under build/bench (or
// BENCH_OUT) and returns the directory.
func writeReport(t *testing.T, rep report, md string) string {
	t.Helper()
	dir := os.Getenv("BENCH_OUT")
	if dir == "" {
		dir = filepath.Join("..", "build", "bench")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"report.md": []byte(md), "report.json": append(js, '\n')} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	abs, _ := filepath.Abs(dir)
	return abs
}
