package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/pullthrough/pullthrough/internal/testenv"
)

// The current clients against the upstream zoo: oras 1.3 (an artifact and
// its referrer), podman with a registries.conf path-prefix mirror, and
// containerd 2.x's ctr with hosts.toml, each pulling through the mirror
// binary from two zoo members. Every member is named by an .example host
// that only the mirror can reach (PULLTHROUGH_UPSTREAMS); a client that
// falls back to the registry itself meets the trap, its HTTP(S) proxy.

// newZooClients runs the mirror binary (S3 store, as deployed) in front of
// members keyed by the registry host each stands for, and a tap and trap
// for the client.
func newZooClients(t *testing.T, members map[string]*testenv.ZooMember) *clientStack {
	t.Helper()
	if testing.Short() {
		t.Skip("runs real clients")
	}
	var ups, authHosts []string
	for host, m := range members {
		ups = append(ups, host+"="+m.Front.URL.String())
		if hosts := m.AuthHosts(); len(hosts) > 0 {
			// A member's token realm on another host is trusted as a
			// deployment trusts Docker Hub's (README, upstreams).
			authHosts = append(authHosts, "PULLTHROUGH_UPSTREAM_"+envKey(host)+"_AUTH_HOSTS="+strings.Join(hosts, ","))
		}
	}
	s3 := testenv.StartS3(t)
	env := append(s3.Env(""), "PULLTHROUGH_UPSTREAMS="+strings.Join(ups, ","), "PULLTHROUGH_MANIFEST_TTL=1h")
	env = append(env, authHosts...)
	mirror, _ := testenv.StartMirror(t, testenv.BuildMirror(t, false), env...)
	c := &clientStack{tap: newTap(t, mirror), trap: newTrap(t)}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("requests the client sent to the mirror:\n%s", c.tap)
		}
	})
	return c
}

// requireNoFallback fails when the client tried to reach anything but
// loopback, and starts a new step in the tap.
func requireNoFallback(t *testing.T, c *clientStack, what string) {
	t.Helper()
	if n := c.trap.Count(); n != 0 {
		t.Errorf("%s: the client tried to reach %d hosts past the mirror (fell back to the registry?): %v", what, n, c.trap.Hosts())
	}
	c.tap.Reset()
}

// TestOrasReferrersThroughZoo: an SBOM-like artifact attached to an image
// in a registry with the referrers API (quay-like) and in one that answers
// it with 406 (Artifactory-like, whose referrer lives under the tag
// schema) is listed by `oras discover` through the mirror's referrers API
// (forced, so oras's own tag-schema fallback cannot hide a failure), and
// `oras pull` of it through the mirror gives the pushed bytes.
func TestOrasReferrersThroughZoo(t *testing.T) {
	members := map[string]*testenv.ZooMember{"quay.example": testenv.QuayLike(t), "artifactory.example": testenv.ArtifactoryLike(t)}
	c := newZooClients(t, members)
	oras := testenv.Tool(t, "oras")
	// oras keeps file names relative to its working directory.
	run := func(t *testing.T, dir string, args ...string) string {
		t.Helper()
		out, err := testenv.Run(t, clientTimeout, c.clientEnv(), "sh", append([]string{"-c", `cd "$0" && exec "$@"`, dir, oras}, args...)...)
		if err != nil {
			t.Fatalf("oras %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	for _, tc := range []struct {
		host, spec string // spec: how the referrer is pushed to the member's registry
		// upstream requests discover costs: oras asks for the referrers
		// of the image and of the referrer it found
		referrersGets, tagSchemaGets int
	}{
		{"quay.example", "v1.1-referrers-api", 2, 0},
		{"artifactory.example", "v1.1-referrers-tag", 2, 2},
	} {
		t.Run(members[tc.host].Name, func(t *testing.T) {
			m := members[tc.host]
			testenv.SeedImage(t, m.Reg, "org/app:1", 4<<10, 1)
			src := t.TempDir()
			sbom := []byte(fmt.Sprintf(`{"spdxVersion":"SPDX-2.3","name":"org/app:1 on %s"}`, tc.host))
			if err := os.WriteFile(filepath.Join(src, "sbom.spdx.json"), sbom, 0o644); err != nil {
				t.Fatal(err)
			}
			run(t, src, "attach", "--plain-http", "--distribution-spec", tc.spec, "--artifact-type", "application/spdx+json",
				"--export-manifest", "referrer.json", m.Reg.Host+"/org/app:1", "sbom.spdx.json:application/spdx+json")
			referrer := fileDigest(t, filepath.Join(src, "referrer.json"))
			m.Front.Reset()
			c.tap.Reset()
			var tagSchema atomic.Int32 // upstream GETs of the <alg>-<hex> fallback tag
			m.Front.Intercept(func(_ http.ResponseWriter, r *http.Request) bool {
				if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/sha256-") {
					tagSchema.Add(1)
				}
				return false
			})

			mirrored := strings.TrimPrefix(c.tap.URL, "http://") + "/" + tc.host + "/org/app"
			out := run(t, src, "discover", "--plain-http", "--distribution-spec", "v1.1-referrers-api", "--format", "json", mirrored+":1")
			// Not the artifact type: go-containerregistry's registry (behind
			// the quay-like member) reports the config media type instead of
			// the manifest's artifactType (pkg/registry/manifest.go).
			if !strings.Contains(out, `"digest": "`+referrer+`"`) {
				t.Errorf("discover: got %s, want the referrer %s", out, referrer)
			}
			if g, s := m.Front.Count(http.MethodGet, "referrers"), int(tagSchema.Load()); g != tc.referrersGets || s != tc.tagSchemaGets {
				t.Errorf("discover: upstream saw %d referrers GETs and %d tag-schema GETs, want %d and %d", g, s, tc.referrersGets, tc.tagSchemaGets)
			}
			c.tap.requireOnly(t, "discover", "/v2/"+tc.host+"/org/app/", "")
			requireNoFallback(t, c, "discover")

			dst := t.TempDir()
			run(t, dst, "pull", "--plain-http", "-o", dst, mirrored+"@"+referrer)
			got, err := os.ReadFile(filepath.Join(dst, "sbom.spdx.json"))
			if err != nil || string(got) != string(sbom) {
				t.Errorf("pull: got %q (%v), want %q", got, err, sbom)
			}
			c.tap.requireOnly(t, "pull", "/v2/"+tc.host+"/org/app/", "")
			requireNoFallback(t, c, "pull")
		})
	}
}

// TestPodmanPathPrefixMirrorThroughZoo: podman with a registries.conf
// mirror under the mirror's path prefix for each registry pulls from a
// GHCR-like member (tokens, blobs on a storage host) and a
// registry.k8s.io-like one (redirects to another registry host); the
// mirror serves the tag, the manifests and every blob, and podman never
// asks the registry itself.
func TestPodmanPathPrefixMirrorThroughZoo(t *testing.T) {
	podman := testenv.Tool(t, "podman")
	members := map[string]*testenv.ZooMember{"ghcr.example": testenv.GHCRLike(t), "registry.k8s.example": testenv.K8sRegistryLike(t)}
	c := newZooClients(t, members)
	// podman refuses a runroot longer than 50 bytes.
	dir, err := os.MkdirTemp("", "ptpod")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// containers-registries.conf(5): the [[registry]] whose prefix matches
	// the image name is chosen, and a mirror's location replaces that
	// prefix, so ghcr.example/org/app is asked for at
	// <mirror>/ghcr.example/org/app first, then at ghcr.example itself.
	// insecure lets podman fall back from HTTPS to plain HTTP.
	var conf strings.Builder
	conf.WriteString("unqualified-search-registries = []\n")
	for host := range members {
		fmt.Fprintf(&conf, "\n[[registry]]\nprefix = %q\nlocation = %q\n\n[[registry.mirror]]\nlocation = %q\ninsecure = true\n",
			host, host, strings.TrimPrefix(c.tap.URL, "http://")+"/"+host)
	}
	confPath := filepath.Join(dir, "registries.conf")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "auth.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(c.clientEnv(), "CONTAINERS_REGISTRIES_CONF="+confPath, "REGISTRY_AUTH_FILE="+filepath.Join(dir, "auth.json"))
	global := []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"), "--storage-driver", "vfs",
		"--cgroup-manager", "cgroupfs", "--events-backend", "none", "--tmpdir", filepath.Join(dir, "tmp")}
	run := func(t *testing.T, args ...string) string {
		t.Helper()
		out, err := testenv.Run(t, clientTimeout, env, podman, append(global, args...)...)
		if err != nil {
			t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(out)
	}
	for _, tc := range []struct{ host, repo string }{
		{"ghcr.example", "org/app"},
		{"registry.k8s.example", "pause"},
	} {
		t.Run(members[tc.host].Name, func(t *testing.T) {
			dgst, imgs := seedMultiArch(t, members[tc.host].Reg, tc.repo+":1", types.OCIImageIndex)
			ref := tc.host + "/" + tc.repo + ":1"
			c.tap.Reset()
			run(t, "pull", "--platform", "linux/amd64", ref)
			if got := run(t, "image", "inspect", "--format", "{{.Digest}}", ref); got != dgst.String() {
				t.Errorf("image inspect: got digest %s, want %s", got, dgst)
			}
			c.tap.requireOnly(t, "pull", "/v2/"+tc.host+"/"+tc.repo+"/", "")
			c.tap.requireTag(t, "pull", "1", dgst)
			c.tap.requireBlobs(t, "pull", blobsOf(t, imgs["amd64"]), "miss")
			requireNoFallback(t, c, "pull")
		})
	}
}

// TestContainerd2HostsMirrorThroughZoo: containerd 2.x (its daemon pulls,
// through the transfer service) with a hosts.toml per registry sends ?ns=
// to the mirror and pulls from a Docker Hub-like member (a Docker manifest
// list, rate-limit headers) and an ECR Public-like one (no blob HEAD,
// blobs on a CDN); the mirror serves every request and neither the
// daemon nor ctr asks the registry itself.
func TestContainerd2HostsMirrorThroughZoo(t *testing.T) {
	ctr := testenv.Tool(t, "containerd-v2/ctr")
	members := map[string]*testenv.ZooMember{"hub.example": testenv.DockerHubLike(t), "ecr.example": testenv.ECRPublicLike(t)}
	c := newZooClients(t, members)
	ctd := testenv.StartContainerd2(t, c.clientEnv()...)
	// containerd docs/hosts.md: a [host] other than the server gets every
	// request with ?ns=<registry host>; only when all hosts fail does the
	// server itself get asked.
	hosts := t.TempDir()
	for host := range members {
		toml := fmt.Sprintf("server = \"https://%s\"\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", host, c.tap.URL)
		if err := os.MkdirAll(filepath.Join(hosts, host), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(hosts, host, "hosts.toml"), []byte(toml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		host, repo string
		list       types.MediaType
	}{
		{"hub.example", "library/app", types.DockerManifestList},
		{"ecr.example", "docker/library/alpine", types.OCIImageIndex},
	} {
		t.Run(members[tc.host].Name, func(t *testing.T) {
			dgst, imgs := seedMultiArch(t, members[tc.host].Reg, tc.repo+":1", tc.list)
			ref := tc.host + "/" + tc.repo + ":1"
			c.tap.Reset()
			out, err := testenv.Run(t, clientTimeout, c.clientEnv(), ctr, "--address", ctd.Address,
				"images", "pull", "--hosts-dir", hosts, "--snapshotter", "native", "--platform", "linux/amd64", ref)
			if err != nil {
				t.Fatalf("ctr images pull: %v\n%s", err, out)
			}
			out, err = testenv.Run(t, clientTimeout, nil, ctr, "--address", ctd.Address, "images", "ls")
			if err != nil || !strings.Contains(out, ref+" ") || !strings.Contains(out, dgst.String()) {
				t.Errorf("ctr images ls does not list %s at %s (%v):\n%s", ref, dgst, err, out)
			}
			c.tap.requireOnly(t, "pull", "/v2/"+tc.repo+"/", "ns="+tc.host)
			c.tap.requireTag(t, "pull", "1", dgst)
			// containerd 2.4.2's transfer service also fetches the other
			// platform's manifest and config (observed here), not its layers.
			armConfig, _ := imgs["arm64"].ConfigName()
			c.tap.requireBlobs(t, "pull", append(blobsOf(t, imgs["amd64"]), armConfig.String()), "miss")
			requireNoFallback(t, c, "pull")
		})
	}
}
