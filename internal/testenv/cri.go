package testenv

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// CRIConfig is what a Kubernetes node's containerd 2.x configuration says
// about pulls.
type CRIConfig struct {
	// ConfigPath is the CRI registry config_path: the hosts.toml
	// directory (or, as containerd's Linux default, a ':'-separated list).
	ConfigPath string
	// MaxConcurrentDownloads and ConcurrentLayerFetchBuffer go to the
	// transfer service, as Bottlerocket renders them: set in the CRI
	// section, a non-default max_concurrent_downloads makes containerd 2.1+
	// fall back to its local pull (CheckLocalImagePullConfigs), and the CRI
	// concurrent_layer_fetch_buffer is unused by the transfer service
	// (bottlerocket-core-kit PR #838). Zero leaves containerd's default.
	MaxConcurrentDownloads     int
	ConcurrentLayerFetchBuffer int
}

// StartContainerdCRI starts a private containerd 2.x with its CRI plugin,
// so crictl (and kubelet) can pull through it. Pulls go through the
// transfer service, as kubelet's do on containerd 2.1+, and unpack with the
// native snapshotter; the runtime side is loaded but never asked to run
// anything, so no runc is needed.
func StartContainerdCRI(t testing.TB, cfg CRIConfig, env ...string) *Containerd {
	t.Helper()
	off := disabled("io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.erofs")
	off = slices.DeleteFunc(off, func(p string) bool { return p == "io.containerd.grpc.v1.cri" })
	transfer := ""
	if cfg.MaxConcurrentDownloads > 0 {
		transfer += fmt.Sprintf("  max_concurrent_downloads = %d\n", cfg.MaxConcurrentDownloads)
	}
	if cfg.ConcurrentLayerFetchBuffer > 0 {
		transfer += fmt.Sprintf("  concurrent_layer_fetch_buffer = %d\n", cfg.ConcurrentLayerFetchBuffer)
	}
	extra := fmt.Sprintf(`[plugins."io.containerd.cri.v1.images"]
  snapshotter = "native"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = %q

[plugins."io.containerd.transfer.v1.local"]
%s  [[plugins."io.containerd.transfer.v1.local".unpack_config]]
    platform = "linux/%s"
    snapshotter = "native"
`, cfg.ConfigPath, transfer, runtime.GOARCH)
	return startContainerd(t, Tool(t, "containerd-v2/containerd"), 3, off, extra, env...)
}

// LocalPullFallback reports whether containerd logged that it pulls with
// its local client instead of the transfer service (a CRI setting the
// transfer service does not support was found).
func (c *Containerd) LocalPullFallback() bool {
	return strings.Contains(c.Proc.Output(), "Falling back to local image pull mode")
}

// Crictl runs crictl against c's CRI endpoint with a deadline, in the
// minimal environment plus env, and returns its combined output.
func Crictl(t testing.TB, c *Containerd, timeout time.Duration, env []string, args ...string) (string, error) {
	t.Helper()
	ep := "unix://" + c.Address
	return Run(t, timeout, env, Tool(t, "crictl"), append([]string{
		"--config", "/dev/null", "--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", timeout.String(),
	}, args...)...)
}
