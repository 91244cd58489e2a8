package testenv

import (
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
)

// StartContainerd2 starts the current containerd (2.x, from
// bin/containerd-v2/) with a version 3 configuration: its own root, state
// and sockets under a temporary directory, the CRI plugins and the
// snapshotters that need special kernels or disks disabled, and pulls
// unpacked into the native snapshotter (the transfer service's default,
// overlayfs, needs mounts this machine may not allow). Pulls through
// `ctr images pull` run in this daemon (the transfer service), so env (the
// trap proxy, say) is what they see.
func StartContainerd2(t testing.TB, env ...string) *Containerd {
	t.Helper()
	bin := Tool(t, "containerd-v2/containerd")
	dir := shortTempDir(t, "ptctd2")
	c := &Containerd{Address: filepath.Join(dir, "c.sock")}
	var disabled string
	for _, p := range []string{
		"io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime",
		"io.containerd.podsandbox.controller.v1.podsandbox", "io.containerd.nri.v1.nri",
		"io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
		"io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.erofs",
		"io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
	} {
		disabled += fmt.Sprintf("%q, ", p)
	}
	cfg := fmt.Sprintf("version = 3\nroot = %q\nstate = %q\ndisabled_plugins = [%s]\n\n[grpc]\n  address = %q\n\n[ttrpc]\n  address = %q\n\n[plugins.\"io.containerd.internal.v1.opt\"]\n  path = %q\n\n[[plugins.\"io.containerd.transfer.v1.local\".unpack_config]]\n  platform = %q\n  snapshotter = \"native\"\n",
		filepath.Join(dir, "root"), filepath.Join(dir, "state"), disabled, c.Address, c.Address+".ttrpc", filepath.Join(dir, "opt"), runtime.GOOS+"/"+runtime.GOARCH)
	c.start(t, bin, filepath.Join(dir, "config.toml"), cfg, env)
	return c
}
