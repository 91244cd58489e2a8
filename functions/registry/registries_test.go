package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/pullthrough/pullthrough/internal/testenv"
)

// containerd with one hosts.toml per registry, all pointing at one mirror
// that serves two registries (one behind bearer-token auth): each pull is
// served by the right upstream, and a registry the mirror is not configured
// for gets no outbound request from it.
func TestContainerdSeveralRegistries(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real containerd")
	}
	hub := newStack(t)
	ghcrReg := testenv.DistributionRegistry(t)
	ghcr := testenv.NewUpstream(t, ghcrReg)
	hubDigest, _ := seedMultiArch(t, hub.reg, "library/ptctr:1", types.OCIImageIndex)
	ghcrDigest, _ := seedMultiArch(t, ghcrReg, "org/app:1", types.OCIImageIndex)
	ghcr.RequireToken("", "robot", "ghcr-password-value")

	mirror, proc := testenv.StartMirror(t, testenv.BuildMirror(t, false), hub.env(
		"PULLTHROUGH_UPSTREAMS=docker.io="+hub.up.URL.String()+",ghcr.io="+ghcr.URL.String(),
		"PULLTHROUGH_UPSTREAM_GHCR_IO_USERNAME=robot",
		"PULLTHROUGH_UPSTREAM_GHCR_IO_PASSWORD=ghcr-password-value",
	)...)
	trap := newTrap(t)
	ctd := testenv.StartContainerd(t)
	hosts := t.TempDir()
	for registry, server := range map[string]string{"docker.io": "https://registry-1.docker.io", "ghcr.io": "https://ghcr.io", "quay.io": "https://quay.io"} {
		toml := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", server, mirror)
		if err := os.MkdirAll(filepath.Join(hosts, registry), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(hosts, registry, "hosts.toml"), []byte(toml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"HTTP_PROXY=" + trap.URL, "HTTPS_PROXY=" + trap.URL, "NO_PROXY=127.0.0.1,localhost"}
	ctr := testenv.Tool(t, "ctr")
	pull := func(ref string) (string, error) {
		return testenv.Run(t, clientTimeout, env, ctr, "--address", ctd.Address, "images", "pull", "--hosts-dir", hosts, "--snapshotter", "native", "--platform", "linux/amd64", ref)
	}
	hub.up.Reset()
	ghcr.Reset() // the start-up check asked its /v2/

	if out, err := pull("docker.io/library/ptctr:1"); err != nil {
		t.Fatalf("docker.io pull: %v\n%s", err, out)
	}
	if hub.up.Count(http.MethodGet, "blob") != 3 || ghcr.Total() != 0 {
		t.Errorf("docker.io pull: docker.io saw %d blob GETs (want 3), ghcr.io %d requests (want 0)", hub.up.Count(http.MethodGet, "blob"), ghcr.Total())
	}
	hub.up.Reset()
	if out, err := pull("ghcr.io/org/app:1"); err != nil {
		t.Fatalf("ghcr.io pull: %v\n%s", err, out)
	}
	if ghcr.Count(http.MethodGet, "blob") != 3 || hub.up.Total() != 0 || ghcr.Count(http.MethodGet, "token") == 0 {
		t.Errorf("ghcr.io pull: ghcr.io saw %d blob GETs (want 3) and %d token requests (want some), docker.io %d requests (want 0)",
			ghcr.Count(http.MethodGet, "blob"), ghcr.Count(http.MethodGet, "token"), hub.up.Total())
	}
	out, err := testenv.Run(t, clientTimeout, env, ctr, "--address", ctd.Address, "images", "ls")
	if err != nil || !strings.Contains(out, hubDigest.String()) || !strings.Contains(out, ghcrDigest.String()) {
		t.Errorf("ctr images ls lacks the pulled digests (%v):\n%s", err, out)
	}

	// quay.io is not configured: the mirror refuses with 404 and calls no
	// one; containerd falls back to quay.io itself, which only the trap sees.
	hub.up.Reset()
	ghcr.Reset()
	if out, err := pull("quay.io/org/app:1"); err == nil {
		t.Errorf("quay.io pull succeeded without a quay.io upstream:\n%s", out)
	}
	if n := hub.up.Total() + ghcr.Total(); n != 0 {
		t.Errorf("an unconfigured registry caused %d upstream requests", n)
	}
	if !strings.Contains(proc.Output(), `"path":"/v2/org/app/manifests/1","upstream":"","cache":"","status":404`) {
		t.Errorf("the mirror did not answer the quay.io request with 404:\n%s", proc.Output())
	}
	if strings.Contains(proc.Output(), "ghcr-password-value") {
		t.Errorf("an upstream password appears in the mirror's log")
	}
}
