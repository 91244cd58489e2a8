package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/pullthrough/pullthrough/internal/testenv"
)

// TestContainerdPathPrefixMirror: containerd's hosts.toml mirror whose URL
// has a path, `[host."https://mirror/v2/docker.io"]` with override_path =
// true (containerd docs/hosts.md), sends
// /v2/docker.io/library/<name>/...?ns=docker.io. The mirror serves it;
// before, it answered 404 and containerd quietly pulled from the registry
// itself (here: the trap).
func TestContainerdPathPrefixMirror(t *testing.T) {
	c := newClientStack(t)
	dgst, imgs := seedMultiArch(t, c.reg, "library/ptprefix:1", types.OCIImageIndex)
	ctd := testenv.StartContainerd(t)
	hosts := filepath.Join(t.TempDir(), "docker.io")
	toml := fmt.Sprintf("server = \"https://registry-1.docker.io\"\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n  override_path = true\n",
		c.tap.URL+"/v2/docker.io")
	if err := os.MkdirAll(hosts, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hosts, "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	const ref = "docker.io/library/ptprefix:1"
	ctr := testenv.Tool(t, "ctr")
	args := []string{"--address", ctd.Address, "images", "pull", "--hosts-dir", filepath.Dir(hosts), "--snapshotter", "native", "--platform", "linux/amd64", ref}
	// containerd 2's ctr pulls through the daemon's transfer service unless
	// told --local (1.6's has no such flag: it always pulls itself).
	if help, _ := testenv.Run(t, clientTimeout, nil, ctr, "images", "pull", "--help"); strings.Contains(help, "--local") {
		args = slices.Insert(args, 4, "--local")
	}
	if out, err := testenv.Run(t, clientTimeout, c.clientEnv(), ctr, args...); err != nil {
		t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	c.tap.requireOnly(t, "prefixed pull", "/v2/docker.io/library/ptprefix/", "ns=docker.io")
	c.tap.requireTag(t, "prefixed pull", "1", dgst)
	if n := c.trap.Count(); n != 0 {
		t.Errorf("ctr tried to reach %d non-loopback hosts (fell back to the registry itself): %v", n, c.trap.Hosts())
	}
	if got := c.up.Count(http.MethodGet, "blob"); got < len(blobsOf(t, imgs["amd64"])) {
		t.Errorf("upstream saw %d blob GETs, want the %d of linux/amd64 at least", got, len(blobsOf(t, imgs["amd64"])))
	}
}
