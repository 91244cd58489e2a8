package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/pullthrough/pullthrough/internal/testenv"
)

// The node path Kubernetes uses: kubelet asks containerd's CRI plugin to
// pull (here crictl, which speaks the same CRI API), and containerd 2.1+
// pulls through its transfer service, which reads only the CRI registry
// config_path.

// bottlerocketCRI is a node's pull configuration as Bottlerocket renders it
// for containerd 2.1+: both keys under [plugins."io.containerd.transfer.v1.local"]
// (bottlerocket-core-kit PR #621 review, PR #838), the chunk buffer at the
// 8 MiB PR #645 made the default (PR #764 later set the default back to 0;
// users turn it on with settings.container-runtime.concurrent-download-chunk-size),
// and containerd's default of 3 downloads.
func bottlerocketCRI(configPath string) testenv.CRIConfig {
	return testenv.CRIConfig{ConfigPath: configPath, MaxConcurrentDownloads: 3, ConcurrentLayerFetchBuffer: 8 << 20}
}

// criLayerSize makes the big layer three chunks of the 8 MiB buffer.
const criLayerSize = 18 << 20

// TestCRIPullThroughRecipes pulls with crictl through containerd 2.4's CRI
// plugin, configured with the hosts.toml files the Terraform node recipes
// write (installed from the AL2023 user data) and Bottlerocket's parallel
// layer fetch, cold and then warm from a fresh node, through the local
// server and the Lambda bootstrap under the faithful function-URL harness.
// Every request reaches the mirror with ?ns=docker.io, the upstream is
// asked once per blob, nothing reaches the registry itself (the trap), and
// the mirror sees the ranged layer GETs containerd sends: Range: bytes=0-
// and, where the answer has a length, the other chunks of the layer.
func TestCRIPullThroughRecipes(t *testing.T) {
	c := newClientStack(t)
	c.backends = slices.DeleteFunc(c.backends, func(b backend) bool { return b.name == "lambda-permissive" })
	hosts := installUserData(t, renderRecipes(t, c.tap.URL, recipeUpstreams))
	c.each(t, func(t *testing.T, b backend) {
		repo := "library/ptcri-" + b.name
		ref := "docker.io/" + repo + ":1"
		img, big := seedCRIImage(t, c, repo+":1")
		blobs := blobsOf(t, img)
		prefix := "/v2/" + repo + "/"
		chunks := []string{"bytes=0-", fmt.Sprintf("bytes=%d-", 8<<20), fmt.Sprintf("bytes=%d-", 16<<20)}

		pull := func(what string) {
			t.Helper()
			// A fresh node each time: the second pull is warm for the
			// mirror, not for containerd's content store.
			ctd := testenv.StartContainerdCRI(t, bottlerocketCRI(hosts), c.clientEnv()...)
			out, err := testenv.Crictl(t, ctd, clientTimeout, nil, "pull", ref)
			if err != nil {
				t.Fatalf("%s: crictl pull %s: %v\n%s\ncontainerd:\n%s", what, ref, err, out, ctd.Proc.Output())
			}
			checkCRIImage(t, what, ctd, ref, img)
			if ctd.LocalPullFallback() {
				t.Errorf("%s: containerd fell back to its local pull, not the transfer service kubelet uses:\n%s", what, ctd.Proc.Output())
			}
		}

		pull("cold pull")
		c.tap.requireOnly(t, "cold pull", prefix, "ns=docker.io")
		// The first GET of the layer is the miss (the local server answers
		// 206 from the fill as it streams; the function fills first and
		// redirects, and S3's answer gives containerd the length it splits
		// by); the other chunks join the fill or find it done.
		c.requireRanges(t, "cold pull", big, chunks, "miss")
		c.checkCounts(t, "cold pull", blobs, true)

		pull("warm pull")
		c.tap.requireOnly(t, "warm pull", prefix, "ns=docker.io")
		// Every chunk is redirected to the store, which answers the range.
		c.requireRanges(t, "warm pull", big, chunks, "hit")
		c.checkCounts(t, "warm pull", nil, false)
	})
}

// seedCRIImage pushes a one-platform image for this machine with a small
// layer and a big one of criLayerSize, returning it and the big layer's
// digest.
func seedCRIImage(t *testing.T, c *clientStack, repoTag string) (v1.Image, string) {
	t.Helper()
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	var big string
	for _, size := range []int64{64 << 10, criLayerSize} {
		l, err := random.Layer(size, types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
		d, _ := l.Digest()
		big = d.String()
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(c.reg.Host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("seed %s: %v", repoTag, err)
	}
	return img, big
}

// checkCRIImage checks that the CRI image service knows ref as img (its
// image id is the config digest).
func checkCRIImage(t *testing.T, what string, ctd *testenv.Containerd, ref string, img v1.Image) {
	t.Helper()
	out, err := testenv.Crictl(t, ctd, clientTimeout, nil, "inspecti", "--output", "json", ref)
	if err != nil {
		t.Fatalf("%s: crictl inspecti %s: %v\n%s", what, ref, err, out)
	}
	var got struct {
		Status struct {
			ID       string   `json:"id"`
			RepoTags []string `json:"repoTags"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &got); err != nil {
		t.Fatalf("%s: crictl inspecti: %v\n%s", what, err, out)
	}
	cfg, _ := img.ConfigName()
	if got.Status.ID != cfg.String() || !slices.Contains(got.Status.RepoTags, ref) {
		t.Errorf("%s: CRI image %s tagged %v, want %s tagged %s", what, got.Status.ID, got.Status.RepoTags, cfg, ref)
	}
}

// requireRanges checks the client's GETs of blob dgst since the last Reset:
// each asked a Range (containerd 2.1+ always does), the ranges asked are
// exactly want, each was answered without error, the first with the given
// cache result, and, on a hit, all of them.
func (c *clientStack) requireRanges(t *testing.T, what, dgst string, want []string, cache string) {
	t.Helper()
	var got []string
	for _, r := range c.tap.requests() {
		path, _, _ := strings.Cut(r.uri, "?")
		if r.method != http.MethodGet || !strings.HasSuffix(path, "/blobs/"+dgst) {
			continue
		}
		wantCache := cache
		if len(got) > 0 && cache == "miss" && r.cache == "hit" {
			wantCache = "hit" // a later chunk that found the fill done
		}
		got = append(got, r.rng)
		switch {
		case r.rng == "":
			t.Errorf("%s: %s, want a Range header", what, r)
		case r.cache != wantCache || !slices.Contains([]int{http.StatusOK, http.StatusPartialContent, http.StatusTemporaryRedirect}, r.status):
			t.Errorf("%s: %s, want 206, 200 or 307 with cache=%s", what, r, wantCache)
		}
	}
	if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
		t.Errorf("%s: layer %s fetched with ranges %q, want %q (one GET per chunk)", what, dgst, got, want)
	}
}

// TestCRIConfigPathListTrap shows the trap the README documents, on
// containerd 2.4: with config_path as containerd's Linux default list
// (here "<recipes>:<empty dir>", as /etc/containerd/certs.d:/etc/docker/certs.d),
// a CRI pull through the transfer service finds no hosts.toml and goes to
// the registry itself (the trap), never to the mirror.
func TestCRIConfigPathListTrap(t *testing.T) {
	c := newClientStack(t)
	hosts := installUserData(t, renderRecipes(t, c.tap.URL, recipeUpstreams))
	c.tap.retarget(t, c.backends[0].url)
	seedCRIImage(t, c, "library/ptcritrap:1")
	ctd := testenv.StartContainerdCRI(t, bottlerocketCRI(hosts+":"+t.TempDir()), c.clientEnv()...)
	out, err := testenv.Crictl(t, ctd, clientTimeout, nil, "pull", "docker.io/library/ptcritrap:1")
	if err == nil {
		t.Errorf("crictl pull succeeded with a config_path list:\n%s", out)
	}
	if n := len(c.tap.requests()); n != 0 {
		t.Errorf("the mirror got %d requests, want none (the list is read as one directory)", n)
	}
	if !slices.ContainsFunc(c.trap.Hosts(), func(h string) bool { return strings.Contains(h, "registry-1.docker.io") }) {
		t.Errorf("the trap saw %v, want the pull to go to registry-1.docker.io", c.trap.Hosts())
	}
}

// TestCRIPullWithoutChunkBuffer: with concurrent_layer_fetch_buffer unset
// (containerd's default, and Bottlerocket's since bottlerocket-core-kit PR
// #764), containerd 2.4 sends no Range header at all: one whole GET per
// blob, through the same recipes.
func TestCRIPullWithoutChunkBuffer(t *testing.T) {
	c := newClientStack(t)
	hosts := installUserData(t, renderRecipes(t, c.tap.URL, recipeUpstreams))
	c.tap.retarget(t, c.backends[0].url)
	img, _ := seedCRIImage(t, c, "library/ptcriwhole:1")
	ctd := testenv.StartContainerdCRI(t, testenv.CRIConfig{ConfigPath: hosts}, c.clientEnv()...)
	ref := "docker.io/library/ptcriwhole:1"
	if out, err := testenv.Crictl(t, ctd, clientTimeout, nil, "pull", ref); err != nil {
		t.Fatalf("crictl pull %s: %v\n%s", ref, err, out)
	}
	checkCRIImage(t, "pull", ctd, ref, img)
	c.tap.requireOnly(t, "pull", "/v2/library/ptcriwhole/", "ns=docker.io")
	for _, r := range c.tap.requests() {
		if r.rng != "" {
			t.Errorf("%s: want no Range header without the chunk buffer", r)
		}
	}
	c.tap.requireBlobs(t, "pull", blobsOf(t, img), "miss")
	c.checkCounts(t, "pull", blobsOf(t, img), true)
}
