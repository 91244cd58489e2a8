package main

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/pullthrough/pullthrough/internal/testenv"
)

// TestDockerdContainerdImageStore pulls with Docker Engine 28.5.2 using the
// containerd image store (the default for new installations from Docker
// 29), whose pulls are containerd's: registry-mirrors become a containerd
// mirror for docker.io, sent ?ns=docker.io like any hosts.toml mirror. Cold
// from one daemon, then warm from a fresh daemon and containerd, through
// every backend; the trap shows nothing reached Docker Hub.
//
// Opt-in (PULLTHROUGH_DOCKERD28=<path to dockerd>): no Docker 28+ package is
// installable here and the build takes minutes, too long for every CI run.
// github.com/docker/docker has no go.mod, so `go install ...@v28.5.2+incompatible`
// resolves every dependency at its latest version and fails; building with
// the module's own pins works:
//
//	cp -r "$(go env GOMODCACHE)/github.com/docker/docker@v28.5.2+incompatible" src && chmod -R u+w src && cd src
//	cp vendor.mod go.mod && cp vendor.sum go.sum && rm -rf vendor
//	go build -mod=mod -tags exclude_graphdriver_btrfs -o dockerd ./cmd/dockerd
func TestDockerdContainerdImageStore(t *testing.T) {
	bin := os.Getenv("PULLTHROUGH_DOCKERD28")
	if bin == "" {
		t.Skip("set PULLTHROUGH_DOCKERD28 to a dockerd 28.5.2 binary (see the test's comment)")
	}
	c := newClientStack(t)
	docker := testenv.Tool(t, "docker")
	settings := map[string]any{"registry-mirrors": []string{c.tap.URL}}
	c.each(t, func(t *testing.T, b backend) {
		repo := "ptdkctd-" + b.name
		dgst, imgs := seedMultiArch(t, c.reg, "library/"+repo+":1", types.OCIImageIndex)
		prefix := "/v2/library/" + repo + "/"
		for _, step := range []struct{ what, cache string }{{"cold pull", "miss"}, {"warm pull", "hit"}} {
			// A fresh daemon each time: warm for the mirror, not for
			// containerd's content store.
			d := testenv.StartDockerdContainerdStore(t, bin, testenv.StartContainerd2(t), settings, c.clientEnv()...)
			env := append(c.clientEnv(), "DOCKER_CONFIG="+t.TempDir(), "DOCKER_HOST="+d.Host)
			mustRun(t, env, docker, "pull", "library/"+repo+":1")
			// With the containerd store the image ID is the index digest.
			if got := strings.TrimSpace(mustRun(t, env, docker, "image", "inspect", "--format", "{{.Id}}", repo+":1")); got != dgst.String() {
				t.Errorf("%s: image ID %s, want the index %s", step.what, got, dgst)
			}
			c.pulled(t, step.what, prefix, "ns=docker.io", dgst, blobsOf(t, imgs["amd64"]), step.cache)
		}
	})
}
