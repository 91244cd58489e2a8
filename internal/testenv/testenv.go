// Package testenv starts the real components pullthrough's tests run
// against: the versitygw S3 server, the distribution registry, an in-process
// registry, and test-side upstream wrappers that count requests, demand
// bearer tokens or inject faults. It is test support, imported only by
// _test.go files; nothing here stubs pullthrough's own interfaces.
package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// ToolsDir is where scripts/tools.sh installs pinned binaries.
func ToolsDir() string {
	if d := os.Getenv("PULLTHROUGH_TOOLS"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "pullthrough", "tools")
}

// Tool finds an installed binary. A missing tool fails the test (run
// `make tools`); only -short runs skip.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(ToolsDir(), "bin", name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	// scripts/tools.sh records why it left a tool out (installing it would
	// have removed a package the developer has): skip, saying so.
	if why, err := os.ReadFile(filepath.Join(ToolsDir(), "bin", ".skip-"+filepath.Base(name))); err == nil {
		t.Skipf("%s not available: %s", name, strings.TrimSpace(string(why)))
	}
	if testing.Short() {
		t.Skipf("%s not installed (run make tools)", name)
	}
	t.Fatalf("%s not installed: run `make tools` (scripts/tools.sh)", name)
	return ""
}

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// NoRedirect is a client that shows a redirect instead of following it.
var NoRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// WaitHTTP polls url until it answers with any status.
func WaitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	waitHTTP(t, http.DefaultClient, url, timeout)
}

func waitHTTP(t testing.TB, c *http.Client, url string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		var resp *http.Response
		if resp, err = c.Get(url); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not answer within %s: %v", url, timeout, err)
}

// Process is a started subprocess whose output is kept for assertions.
type Process struct {
	Cmd *exec.Cmd
	out *syncBuffer
}

// Output returns everything the process wrote so far.
func (p *Process) Output() string { return p.out.String() }

// Kill sends SIGKILL and waits.
func (p *Process) Kill() {
	if p.Cmd.Process != nil {
		p.Cmd.Process.Kill()
		p.Cmd.Wait()
	}
}

// Start runs a command until the test ends. env is added to a minimal
// environment (PATH and HOME only), so the host's AWS settings never leak in.
func Start(t testing.TB, env []string, name string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Process{Cmd: cmd, out: out}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(name), lastLines(out.String(), 40))
		}
	})
	return p
}

// lastLines keeps the last n lines of a process's output, preceded by up to
// n earlier warnings and errors (the cause of a failure is often one of
// them, long before the end).
func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) <= n {
		return s
	}
	var keep []string
	for _, l := range lines[:len(lines)-n] {
		if len(keep) < n && (strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`)) {
			keep = append(keep, l)
		}
	}
	if len(keep) > 0 {
		keep = append(keep, "...")
	}
	return strings.Join(append(keep, lines[len(lines)-n:]...), "\n")
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var builds sync.Map // key -> *buildResult

type buildResult struct {
	once sync.Once
	path string
	err  error
}

// BuildMirror builds functions/registry once per test binary. With lambda
// set it builds the real Lambda bootstrap (linux, CGO off, lambda.norpc).
func BuildMirror(t testing.TB, lambda bool) string {
	t.Helper()
	key := fmt.Sprint(lambda)
	v, _ := builds.LoadOrStore(key, &buildResult{})
	b := v.(*buildResult)
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "pullthrough-build-")
		if err != nil {
			b.err = err
			return
		}
		name := "pullthrough"
		args := []string{"build", "-trimpath", "-o"}
		env := os.Environ()
		if lambda {
			name = "bootstrap"
			args = []string{"build", "-trimpath", "-tags", "lambda.norpc", "-o"}
			env = append(env, "GOOS=linux", "GOARCH="+runtime.GOARCH, "CGO_ENABLED=0")
		}
		b.path = filepath.Join(dir, name)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", append(args, b.path, "github.com/pullthrough/pullthrough/functions/registry")...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// StartMirror runs the local-server binary with env and waits for /v2/.
// It returns the base URL.
func StartMirror(t testing.TB, bin string, env ...string) (string, *Process) {
	t.Helper()
	addr := FreeAddr(t)
	p := Start(t, append([]string{"PULLTHROUGH_ADDR=" + addr}, env...), bin)
	WaitHTTP(t, "http://"+addr+"/v2/", 15*time.Second)
	return "http://" + addr, p
}

// StartMoto runs moto's server (the image's Python ships it), a stand-in
// for AWS control-plane APIs such as Secrets Manager, and returns its URL.
func StartMoto(t testing.TB) string {
	t.Helper()
	bin := Tool(t, "moto_server")
	addr := FreeAddr(t)
	host, port, _ := strings.Cut(addr, ":")
	Start(t, nil, bin, "-H", host, "-p", port)
	WaitHTTP(t, "http://"+addr+"/", 30*time.Second)
	return "http://" + addr
}
