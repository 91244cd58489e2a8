package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/lambdaharness"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// readyTimeout bounds how long a fresh mirror may take to answer /v2/.
const readyTimeout = 30 * time.Second

// contender is one way of pulling the seeded image. start gives a fresh
// instance with empty cache state (a new process and a new S3 prefix).
type contender struct {
	Key   string `json:"key"`
	Label string `json:"label"`
	start func(t *testing.T, run int) *instance
}

// instance is one running contender.
type instance struct {
	base  string           // registry URL the client pulls from
	proc  *testenv.Process // the mirror process; nil for direct pulls
	s3    *s3Counter       // counts the instance's S3 traffic; nil for direct
	close func()           // stops it; read its peak RSS before
	ready time.Duration    // process start to first 200 on /v2/
}

func (e *benchEnv) contenders() []contender {
	all := []contender{
		{Key: "local", Label: "pullthrough, local server, S3", start: e.startLocal},
		{Key: "local-fs", Label: "pullthrough, local server, filesystem (`make run`)", start: e.startLocalFS},
		{Key: "lambda", Label: "pullthrough, Lambda bootstrap", start: e.startLambda},
		{Key: "distribution", Label: "distribution v3.1.2 proxy, S3", start: e.startDistribution},
		{Key: "direct", Label: "direct from upstream", start: e.startDirect},
	}
	if e.base != "" {
		all = append(all[:1], append([]contender{{Key: "local-base", Label: "pullthrough " + baseRef() + ", local server, S3", start: e.startBase}}, all[1:]...)...)
	}
	if len(e.p.Contenders) == 0 {
		return all
	}
	return slices.DeleteFunc(all, func(c contender) bool { return !slices.Contains(e.p.Contenders, c.Key) })
}

func (e *benchEnv) startLocal(t *testing.T, run int) *instance {
	return e.startServer(t, e.local, fmt.Sprintf("bench/local-%d", run), true)
}

// startLocalFS runs the local server over the filesystem store, as
// `make run` does: no S3 at all, blob hits served by the process itself.
// The directory is per run, so the new-process pull finds the cache.
func (e *benchEnv) startLocalFS(t *testing.T, run int) *instance {
	dir := filepath.Join(e.fsRoot, fmt.Sprintf("local-fs-%d", run))
	return e.startServer(t, e.local, "", false, "PULLTHROUGH_STORE=file://"+dir)
}

// startServer runs bin as a local server on a free port: over S3 under
// prefix, its traffic counted, when s3 is set; extra variables last.
func (e *benchEnv) startServer(t *testing.T, bin, prefix string, s3 bool, extra ...string) *instance {
	t.Helper()
	endpoint, inst := e.s3.Endpoint, &instance{}
	if s3 {
		inst.s3 = newS3Counter(t, e.s3.Endpoint)
		endpoint = inst.s3.URL
	}
	addr := testenv.FreeAddr(t)
	began := time.Now()
	env := append(append(e.mirrorEnv(endpoint, prefix), "PULLTHROUGH_ADDR="+addr), extra...)
	inst.proc = testenv.Start(t, env, bin)
	inst.base, inst.close = "http://"+addr, inst.proc.Kill
	inst.ready = waitOK(t, inst.proc, inst.base+"/v2/", began)
	return inst
}

func (e *benchEnv) startLambda(t *testing.T, run int) *instance {
	t.Helper()
	c := newS3Counter(t, e.s3.Endpoint)
	h, err := lambdaharness.New(lambdaharness.Options{})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	p := testenv.Start(t, append(e.mirrorEnv(c.URL, fmt.Sprintf("bench/lambda-%d", run)),
		"AWS_LAMBDA_RUNTIME_API="+h.RuntimeAPI(), "AWS_LAMBDA_FUNCTION_NAME=pullthrough", "PULLTHROUGH_ALLOW_OPEN=true"), e.lambda)
	// The function URL holds the request until the runtime asks for work,
	// as a cold Lambda does, so one request measures the cold start.
	ready := waitOK(t, p, h.URL()+"/v2/", began)
	return &instance{base: h.URL(), proc: p, s3: c, ready: ready, close: func() {
		p.Kill()
		h.Close()
	}}
}

// startDistribution runs the distribution registry as a pull-through cache
// (proxy.remoteurl) over its S3 driver on the same S3 server, with the
// registry:2 image's defaults otherwise (in-memory blob descriptor cache,
// redirects to presigned URLs on). The upstream must be up: it panics at
// start otherwise.
func (e *benchEnv) startDistribution(t *testing.T, run int) *instance {
	t.Helper()
	c := newS3Counter(t, e.s3.Endpoint)
	dir := t.TempDir()
	addr := testenv.FreeAddr(t)
	cfg := distributionConfig(addr, c.URL, e.s3, fmt.Sprintf("/bench/distribution-%d", run), e.up.URL.String())
	path := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	p := testenv.Start(t, []string{"OTEL_TRACES_EXPORTER=none"}, testenv.Tool(t, "registry"), "serve", path)
	base := "http://" + addr
	ready := waitOK(t, p, base+"/v2/", began)
	return &instance{base: base, proc: p, s3: c, close: p.Kill, ready: ready}
}

// distributionConfig is the configuration that works for distribution
// v3.1.2 in proxy mode over versitygw: regionendpoint with an http URL needs
// secure: false, and path-style addressing (forcepathstyle) because the
// server has no per-bucket host names.
func distributionConfig(addr, s3Endpoint string, s *testenv.S3Server, root, upstream string) string {
	return fmt.Sprintf(`version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  s3:
    accesskey: %s
    secretkey: %s
    region: %s
    regionendpoint: %s
    forcepathstyle: true
    secure: false
    v4auth: true
    bucket: %s
    rootdirectory: %s
http:
  addr: %s
  headers:
    X-Content-Type-Options: [nosniff]
proxy:
  remoteurl: %s
`, s.Access, s.Secret, s.Region, s3Endpoint, s.Bucket, root, addr, upstream)
}

func (e *benchEnv) startDirect(t *testing.T, run int) *instance {
	return &instance{base: e.up.URL.String(), close: func() {}}
}

// waitOK polls u until it answers 200 and returns the time since began.
func waitOK(t *testing.T, p *testenv.Process, u string, began time.Time) time.Duration {
	t.Helper()
	client := &http.Client{Timeout: readyTimeout}
	defer client.CloseIdleConnections()
	deadline := began.Add(readyTimeout)
	for time.Now().Before(deadline) {
		resp, err := client.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(began)
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%s: no 200 within %s:\n%s", u, readyTimeout, tail(p.Output(), 30))
	return 0
}

// peakRSS is the process's high-water resident set (VmHWM), in bytes.
func peakRSS(p *testenv.Process) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmHWM %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", p.Cmd.Process.Pid)
}

// cpuTime is the user plus system CPU time a process has used so far, from
// /proc/<pid>/stat (utime and stime, in USER_HZ = 100 ticks a second).
func cpuTime(t *testing.T, p *testenv.Process) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name may hold spaces; the fields after it do not.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat: %q", p.Cmd.Process.Pid, b)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// benchCtx is the context for the benchmark's own calls.
func benchCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
