package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/lambdaharness"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// smallRef is an image whose layers all fit in the uncapped first 6 MB of
// a streamed function URL response, so that the Lambda bootstrap streams
// every cold blob while it fills it (proxy's streamLimit).
const smallRef = "bench/small-layers:1"

// smallLayerSize is the layer size of smallRef before BENCH_SCALE: 4 MiB
// of file in each layer's tar, under 6 MB with the tar and gzip framing.
const smallLayerSize = 4 * mib

// smallPullResult is the cold pull of smallRef by each way of pulling it.
type smallPullResult struct {
	LayerSize int64                      `json:"layerSize"`
	Layers    int                        `json:"layers"`
	Cold      map[string][]time.Duration `json:"coldNs"`
}

// smallWays are the ways smallRef is pulled cold, in report order: the
// bootstrap with one execution environment (as the lambda contender: the
// client's parallel layer GETs queue for it) and with as many as the
// client runs at once (Lambda gives each concurrent request an
// environment of its own), the local server, and direct.
var smallWays = []struct{ key, label string }{
	{"lambda", "pullthrough, Lambda bootstrap, 1 environment"},
	{"lambda-n", "pullthrough, Lambda bootstrap, one environment per parallel layer GET"},
	{"local", "pullthrough, local server, S3"},
	{"local-fs", "pullthrough, local server, filesystem (`make run`)"},
	{"direct", "direct from upstream"},
}

// measureSmallPull pulls smallRef cold through a fresh instance of each
// way, p.Runs times, round-robin so that a change in the machine's load
// touches every way alike.
func measureSmallPull(ctx context.Context, t *testing.T, e *benchEnv) smallPullResult {
	t.Helper()
	res := smallPullResult{LayerSize: e.p.SmallLayerSize, Layers: e.p.Layers, Cold: map[string][]time.Duration{}}
	for run := range e.p.Runs {
		for _, w := range smallWays {
			var inst *instance
			switch w.key {
			case "lambda":
				inst = e.startLambdaEnvs(t, fmt.Sprintf("bench/small-lambda-%d", run), 1)
			case "lambda-n":
				inst = e.startLambdaEnvs(t, fmt.Sprintf("bench/small-lambda-n-%d", run), e.p.PullParallel)
			case "local":
				inst = e.startLocal(t, 2000+run)
			case "local-fs":
				inst = e.startLocalFS(t, 2000+run)
			default:
				inst = e.startDirect(t, run)
			}
			pr, err := pull(ctx, inst.base, smallRef, e.smallImageDigest, e.p.PullParallel)
			inst.close()
			if err != nil {
				t.Fatalf("small layers, %s, run %d: %v", w.key, run+1, err)
			}
			res.Cold[w.key] = append(res.Cold[w.key], pr.Duration)
		}
		t.Logf("small layers run %d: cold lambda %5.2fs, lambda×%d %5.2fs, local %5.2fs, local-fs %5.2fs, direct %5.2fs", run+1,
			res.Cold["lambda"][run].Seconds(), e.p.PullParallel, res.Cold["lambda-n"][run].Seconds(),
			res.Cold["local"][run].Seconds(), res.Cold["local-fs"][run].Seconds(), res.Cold["direct"][run].Seconds())
	}
	return res
}

// startLambdaEnvs runs the bootstrap under the function URL harness with
// n execution environments (n bootstrap processes polling one Runtime
// API), storing under prefix.
func (e *benchEnv) startLambdaEnvs(t *testing.T, prefix string, n int) *instance {
	t.Helper()
	h, err := lambdaharness.New(lambdaharness.Options{Concurrency: n})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	var procs []*testenv.Process
	for range n {
		procs = append(procs, testenv.Start(t, append(e.mirrorEnv(e.s3.Endpoint, prefix),
			"AWS_LAMBDA_RUNTIME_API="+h.RuntimeAPI(), "AWS_LAMBDA_FUNCTION_NAME=pullthrough", "PULLTHROUGH_ALLOW_OPEN=true"), e.lambda))
	}
	ready := waitOK(t, procs[0], h.URL()+"/v2/", began)
	return &instance{base: h.URL(), proc: procs[0], ready: ready, close: func() {
		for _, p := range procs {
			p.Kill()
		}
		h.Close()
	}}
}
