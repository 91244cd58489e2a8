package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"
)

// Containerd is a private containerd daemon: its own root, state and socket
// under a temporary directory, the CRI plugin and the snapshotters that
// need special kernels or disks disabled.
type Containerd struct {
	Address string // unix socket path, for ctr --address and dockerd --containerd
	Proc    *Process
}

// StartContainerd starts containerd and waits for its socket. env is added
// to the minimal environment, as with Start.
func StartContainerd(t testing.TB, env ...string) *Containerd {
	t.Helper()
	return startContainerd(t, Tool(t, "containerd"), 2, disabled("io.containerd.snapshotter.v1.aufs"), "", env...)
}

// StartContainerd2 starts a private containerd 2.x (built by
// scripts/tools.sh under bin/containerd-v2), configured like StartContainerd
// in its configuration version 3.
func StartContainerd2(t testing.TB, env ...string) *Containerd {
	t.Helper()
	return startContainerd(t, Tool(t, "containerd-v2/containerd"), 3, disabled(
		"io.containerd.cri.v1.images",
		"io.containerd.cri.v1.runtime",
		"io.containerd.podsandbox.controller.v1.podsandbox",
		"io.containerd.sandbox.controller.v1.shim",
		"io.containerd.snapshotter.v1.erofs",
		"io.containerd.nri.v1.nri",
	), // Pulls go through the transfer service, which unpacks only for
		// the platforms and snapshotters listed here (ctr's --snapshotter
		// alone fails with "no unpack platforms defined").
		fmt.Sprintf(`[plugins."io.containerd.transfer.v1.local"]
  [[plugins."io.containerd.transfer.v1.local".unpack_config]]
    platform = "linux/%s"
    snapshotter = "native"
`, runtime.GOARCH), env...)
}

// disabledPlugins are turned off in every containerd: CRI, tracing and
// the snapshotters that need special kernels or disks.
var disabledPlugins = []string{
	"io.containerd.grpc.v1.cri",
	"io.containerd.snapshotter.v1.btrfs",
	"io.containerd.snapshotter.v1.devmapper",
	"io.containerd.snapshotter.v1.zfs",
	"io.containerd.tracing.processor.v1.otlp",
	"io.containerd.internal.v1.tracing",
}

// disabled is disabledPlugins and more.
func disabled(more ...string) []string {
	return append(slices.Clone(disabledPlugins), more...)
}

// startContainerd runs bin with a configuration of the given version that
// disables the plugins named in off, and puts every path under a temporary
// directory.
func startContainerd(t testing.TB, bin string, version int, off []string, extra string, env ...string) *Containerd {
	t.Helper()
	dir := shortTempDir(t, "ptctd")
	c := &Containerd{Address: filepath.Join(dir, "containerd.sock")}
	disabled, err := json.Marshal(off)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`version = %d
disabled_plugins = %s
root = %q
state = %q

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q

%s`, version, disabled, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.Address, c.Address+".ttrpc", filepath.Join(dir, "opt"), extra)
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Proc = Start(t, env, bin, "--config", path, "--log-level", "warn")
	t.Cleanup(func() { stopGracefully(c.Proc, 15*time.Second) })
	waitUnix(t, c.Proc, c.Address, "", 30*time.Second)
	return c
}

// Dockerd is a private Docker daemon using a Containerd for its runtime:
// vfs storage, no bridge, no iptables, every path under a temporary
// directory (including the trust key dockerd 20.10 otherwise writes to
// /etc/docker).
type Dockerd struct {
	Host string // unix://..., for docker -H
	Proc *Process
}

// StartDockerd starts dockerd with daemon.json settings merged into its
// private configuration and waits for its API. env is added to the minimal
// environment.
func StartDockerd(t testing.TB, ctd *Containerd, settings map[string]any, env ...string) *Dockerd {
	t.Helper()
	return startDockerd(t, Tool(t, "dockerd"), "vfs", ctd, settings, env...)
}

// StartDockerdContainerdStore starts the dockerd binary bin (Docker 28+)
// with the containerd image store (features.containerd-snapshotter): images,
// pulls and the resolver are containerd's, unpacked with ctd's native
// snapshotter. Otherwise as StartDockerd.
func StartDockerdContainerdStore(t testing.TB, bin string, ctd *Containerd, settings map[string]any, env ...string) *Dockerd {
	t.Helper()
	conf := map[string]any{"features": map[string]bool{"containerd-snapshotter": true}}
	for k, v := range settings {
		conf[k] = v
	}
	return startDockerd(t, bin, "native", ctd, conf, env...)
}

// startDockerd runs bin with the given storage driver (or, with the
// containerd image store, snapshotter).
func startDockerd(t testing.TB, bin, storage string, ctd *Containerd, settings map[string]any, env ...string) *Dockerd {
	t.Helper()
	dir := shortTempDir(t, "ptdkd")
	sock := filepath.Join(dir, "docker.sock")
	conf := map[string]any{"deprecated-key-path": filepath.Join(dir, "key.json")}
	for k, v := range settings {
		conf[k] = v
	}
	b, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	p := Start(t, env, bin,
		"--config-file", cfgPath,
		"--containerd", ctd.Address,
		"--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver="+storage,
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"),
		"--host", "unix://"+sock,
	)
	t.Cleanup(func() { stopGracefully(p, 20*time.Second) })
	waitUnix(t, p, sock, "/_ping", 60*time.Second)
	return &Dockerd{Host: "unix://" + sock, Proc: p}
}

// Run runs a client command with a deadline in the minimal environment plus
// env and returns its combined output.
func Run(t testing.TB, timeout time.Duration, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s: no answer within %s: %w", filepath.Base(name), timeout, ctx.Err())
	}
	return string(out), err
}

// shortTempDir is a temporary directory with a short path: unix socket
// paths are limited to 108 bytes and t.TempDir embeds the test name.
func shortTempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	// Registered before the daemon starts, so it runs after it stopped.
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("daemon left %s behind: %v", dir, err)
		}
	})
	return dir
}

// waitUnix waits until a unix socket accepts connections and, with path
// set, answers an HTTP GET of path with 200.
func waitUnix(t testing.TB, p *Process, sock, path string, timeout time.Duration) {
	t.Helper()
	client := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}},
	}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if path == "" {
			if c, err := net.Dial("unix", sock); err == nil {
				c.Close()
				return
			}
		} else if resp, err := client.Get("http://daemon" + path); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not answer on %s within %s:\n%s", filepath.Base(p.Cmd.Path), sock, timeout, lastLines(p.Output(), 30))
}

// stopGracefully sends SIGTERM so a daemon cleans up its mounts and
// children, and SIGKILL if it is still running after grace.
func stopGracefully(p *Process, grace time.Duration) {
	if p.Cmd.Process == nil || p.Cmd.ProcessState != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		p.Cmd.Wait()
		close(done)
	}()
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		p.Cmd.Process.Kill()
		<-done
	}
}
