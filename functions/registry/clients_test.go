package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/pullthrough/pullthrough/internal/lambdaharness"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// The real-client tests pull a two-platform image through the mirror with
// the clients users run, installed by scripts/tools.sh: dockerd with
// registry-mirrors, containerd 1.6 and 2.x ctr with a hosts.toml mirror,
// skopeo and crane. Each client pulls through every backend in turn: the
// local server, and the real Lambda bootstrap under the function-URL harness
// both as AWS behaves (Content-Length dropped, bodies chunked) and in the
// harness's permissive mode.

const clientTimeout = 2 * time.Minute

var (
	amd64 = v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
)

// clientStack is a mirror of "Docker Hub" that never leaves loopback: the
// mirror names its one upstream docker.io (as dockerd's library/ paths and
// containerd's ?ns=docker.io expect) and reaches it at the counting wrapper.
// Clients talk to a tap in front of the backend in use that records what
// they asked and what the mirror answered; their HTTP proxy is a trap that
// records any attempt to reach the real registry.
type clientStack struct {
	*stack
	tap      *tap
	trap     *trap
	backends []backend
}

// backend is one way of running the mirror.
type backend struct {
	name   string
	url    string
	lambda bool // the bootstrap under the function-URL harness
}

func newClientStack(t *testing.T) *clientStack {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real client daemons")
	}
	s := newStack(t)
	upstreams := "PULLTHROUGH_UPSTREAMS=docker.io=" + s.up.URL.String()
	local, _ := testenv.StartMirror(t, testenv.BuildMirror(t, false), s.env(upstreams)...)
	c := &clientStack{stack: s, tap: newTap(t, local), trap: newTrap(t), backends: []backend{
		{name: "local", url: local},
		{name: "lambda", url: s.startLambda(t, lambdaharness.Faithful, upstreams).URL(), lambda: true},
		{name: "lambda-permissive", url: s.startLambda(t, lambdaharness.Permissive, upstreams).URL(), lambda: true},
	}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("requests the client sent to the mirror:\n%s", c.tap)
		}
	})
	return c
}

// each runs f for every backend in turn, with the tap pointed at it and
// the counts reset. Names seeded inside f should include b.name: every
// backend must start cold.
func (c *clientStack) each(t *testing.T, f func(t *testing.T, b backend)) {
	for _, b := range c.backends {
		t.Run(b.name, func(t *testing.T) {
			c.tap.retarget(t, b.url)
			c.up.Reset()
			c.tap.Reset()
			c.trap.Reset()
			f(t, b)
		})
	}
}

// clientEnv sends a client's traffic to anything but loopback into the trap.
func (c *clientStack) clientEnv() []string {
	return []string{
		"HTTP_PROXY=" + c.trap.URL, "HTTPS_PROXY=" + c.trap.URL,
		"http_proxy=" + c.trap.URL, "https_proxy=" + c.trap.URL,
		"NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost",
	}
}

// pulled checks one pull: every request under prefix (with query, if
// set) and answered without error, the tag resolved to index (unless index
// is zero), exactly blobs fetched with the given cache result, and, for
// misses, one upstream GET per blob and some upstream manifest requests.
func (c *clientStack) pulled(t *testing.T, what, prefix, query string, index v1.Hash, blobs []string, cache string) {
	t.Helper()
	c.tap.requireOnly(t, what, prefix, query)
	if index != (v1.Hash{}) {
		c.tap.requireTag(t, what, "1", index)
	}
	c.tap.requireBlobs(t, what, blobs, cache)
	if cache == "miss" {
		c.checkCounts(t, what, blobs, true)
	} else {
		c.checkCounts(t, what, nil, false)
	}
}

// checkCounts asserts the upstream blob and manifest GETs since the last
// Reset, then resets.
func (c *clientStack) checkCounts(t *testing.T, what string, wantBlobs []string, wantManifests bool) {
	t.Helper()
	if got := c.up.Count(http.MethodGet, "blob"); got != len(wantBlobs) {
		t.Errorf("%s: upstream saw %d blob GETs, want %d (one per blob: %v)", what, got, len(wantBlobs), wantBlobs)
	}
	if got := c.up.Count(http.MethodHead, "blob"); got != 0 {
		t.Errorf("%s: upstream saw %d blob HEADs, want 0", what, got)
	}
	if got := c.up.Count("", "manifest"); (got > 0) != wantManifests {
		t.Errorf("%s: upstream saw %d manifest requests, want any: %v", what, got, wantManifests)
	}
	if n := c.trap.Count(); n != 0 {
		t.Errorf("%s: the client tried to reach %d non-loopback hosts (fell back to the real registry?): %v", what, n, c.trap.Hosts())
	}
	c.up.Reset()
	c.tap.Reset()
	c.trap.Reset()
}

func TestDockerdRegistryMirror(t *testing.T) {
	c := newClientStack(t)
	ctd := testenv.StartContainerd(t)
	d := testenv.StartDockerd(t, ctd, map[string]any{"registry-mirrors": []string{c.tap.URL}}, c.clientEnv()...)
	docker := testenv.Tool(t, "docker")
	env := append(c.clientEnv(), "DOCKER_CONFIG="+t.TempDir(), "DOCKER_HOST="+d.Host)
	c.each(t, func(t *testing.T, b backend) {
		repo := "ptdocker-" + b.name
		dgst, imgs := seedMultiArch(t, c.reg, "library/"+repo+":1", types.DockerManifestList)
		run := func(args ...string) string {
			t.Helper()
			return strings.TrimSpace(mustRun(t, env, docker, args...))
		}
		// checkImage checks that the tag now names the platform's image
		// (its ID is the config digest) and, for the default platform
		// pulled by tag from a list, records the list's digest.
		checkImage := func(what string, p v1.Platform) {
			t.Helper()
			cfg, _ := imgs[p.Architecture].ConfigName()
			checks := []struct{ format, want string }{
				{"{{.Id}} {{.Os}}/{{.Architecture}}", fmt.Sprintf("%s %s/%s", cfg, p.OS, p.Architecture)},
				{"{{json .RepoDigests}}", fmt.Sprintf(`["%s@%s"]`, repo, dgst)},
			}
			if p.Architecture != "amd64" {
				checks = checks[:1]
			}
			for _, tc := range checks {
				if got := run("image", "inspect", "--format", tc.format, repo+":1"); got != tc.want {
					t.Errorf("%s: image inspect %s got %s, want %s", what, tc.format, got, tc.want)
				}
			}
		}
		prefix := "/v2/library/" + repo + "/"

		// A docker.io name: the daemon goes to its registry-mirrors first.
		run("pull", "library/"+repo+":1")
		checkImage("cold pull", amd64)
		c.pulled(t, "cold pull", prefix, "", dgst, blobsOf(t, imgs["amd64"]), "miss")

		// The other platform of the same tag: only its blobs are new.
		run("pull", "--platform", "linux/arm64", "library/"+repo+":1")
		checkImage("arm64 pull", arm64)
		c.pulled(t, "arm64 pull", prefix, "", v1.Hash{}, blobsOf(t, imgs["arm64"]), "miss")

		// Forget both images and pull again: everything comes from the cache.
		amdID, _ := imgs["amd64"].ConfigName()
		armID, _ := imgs["arm64"].ConfigName()
		run("image", "rm", "--force", amdID.String(), armID.String())
		run("pull", "library/"+repo+":1")
		checkImage("warm pull", amd64)
		c.pulled(t, "warm pull", prefix, "", dgst, blobsOf(t, imgs["amd64"]), "hit")
	})
}

func TestContainerdHostsMirror(t *testing.T) {
	c := newClientStack(t)
	testCtr(t, c, testenv.StartContainerd(t).Address, testenv.Tool(t, "ctr"))
}

// containerd 2.x: the current release, with its own daemon (config
// version 3).
func TestContainerd2HostsMirror(t *testing.T) {
	c := newClientStack(t)
	testCtr(t, c, testenv.StartContainerd2(t).Address, testenv.Tool(t, "containerd-v2/ctr"))
}

// testCtr pulls with ctr against the containerd daemon at address, through
// a hosts.toml mirror for docker.io, from every backend.
func testCtr(t *testing.T, c *clientStack, address, ctr string) {
	hosts := t.TempDir()
	toml := fmt.Sprintf("server = \"https://registry-1.docker.io\"\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", c.tap.URL)
	if err := os.MkdirAll(filepath.Join(hosts, "docker.io"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hosts, "docker.io", "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, args ...string) string {
		t.Helper()
		return mustRun(t, c.clientEnv(), ctr, append([]string{"--address", address}, args...)...)
	}
	c.each(t, func(t *testing.T, b backend) {
		repo := "library/ptctr-" + b.name
		ref := "docker.io/" + repo + ":1"
		dgst, imgs := seedMultiArch(t, c.reg, repo+":1", types.OCIImageIndex)
		pull := func(args ...string) {
			t.Helper()
			run(t, append([]string{"images", "pull", "--hosts-dir", hosts, "--snapshotter", "native"}, append(args, ref)...)...)
		}
		checkImage := func(what string) {
			t.Helper()
			if out := run(t, "images", "ls"); !strings.Contains(out, ref+" ") || !strings.Contains(out, dgst.String()) {
				t.Errorf("%s: ctr images ls does not list %s at %s:\n%s", what, ref, dgst, out)
			}
		}
		content := func() []string {
			t.Helper()
			var ds []string // the output may start with warnings
			for _, f := range strings.Fields(run(t, "content", "ls", "--quiet")) {
				if strings.HasPrefix(f, "sha256:") {
					ds = append(ds, f)
				}
			}
			return ds
		}
		prefix := "/v2/" + repo + "/"
		amdBlobs, armBlobs := blobsOf(t, imgs["amd64"]), blobsOf(t, imgs["arm64"])
		armDigest, _ := imgs["arm64"].Digest()

		pull("--platform", "linux/amd64")
		checkImage("amd64 pull")
		c.tap.requireOnly(t, "amd64 pull", prefix, "ns=docker.io")
		c.tap.requireTag(t, "amd64 pull", "1", dgst)
		// containerd 2.x also fetches the other platform's manifest and
		// config; each blob is fetched once, through the mirror.
		first := c.tap.blobGets()
		for _, b := range amdBlobs {
			if !slices.Contains(first, b) {
				t.Errorf("amd64 pull: client did not fetch %s", b)
			}
		}
		var rest []string
		for _, b := range armBlobs {
			if !slices.Contains(first, b) {
				rest = append(rest, b)
			}
		}
		if len(first)+len(rest) != len(amdBlobs)+len(armBlobs) {
			t.Errorf("amd64 pull: client fetched %v, want blobs of the image only", first)
		}
		armManifestFetched := c.tap.asked("/manifests/" + armDigest.String())
		c.tap.requireBlobs(t, "amd64 pull", first, "miss")
		c.checkCounts(t, "amd64 pull", first, true)

		// containerd has the amd64 blobs: only arm64's are fetched.
		pull("--all-platforms")
		checkImage("all-platforms pull")
		c.tap.requireOnly(t, "all-platforms pull", prefix, "ns=docker.io")
		c.tap.requireBlobs(t, "all-platforms pull", rest, "miss")
		c.checkCounts(t, "all-platforms pull", rest, !armManifestFetched)
		have := content()
		for _, b := range append(blobsOf(t, imgs["amd64"]), blobsOf(t, imgs["arm64"])...) {
			if !slices.Contains(have, b) {
				t.Errorf("content store lacks %s after --all-platforms", b)
			}
		}

		// Remove the image and collect its content, then pull it again.
		run(t, "images", "rm", "--sync", ref)
		if left := content(); len(left) != 0 {
			t.Fatalf("content left after images rm --sync: %v", left)
		}
		pull("--all-platforms")
		checkImage("warm pull")
		c.pulled(t, "warm pull", prefix, "ns=docker.io", dgst, append(blobsOf(t, imgs["amd64"]), blobsOf(t, imgs["arm64"])...), "hit")
		// Leave the content store empty for the next backend.
		run(t, "images", "rm", "--sync", ref)
	})
}

func TestSkopeoCopy(t *testing.T) {
	c := newClientStack(t)
	skopeo := testenv.Tool(t, "skopeo")
	conf := filepath.Join(t.TempDir(), "registries.conf")
	if err := os.WriteFile(conf, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(c.clientEnv(), "CONTAINERS_REGISTRIES_CONF="+conf, "REGISTRY_AUTH_FILE="+filepath.Join(t.TempDir(), "auth.json"))
	c.each(t, func(t *testing.T, b backend) {
		repo := "library/ptskopeo-" + b.name
		want, imgs := seedMultiArch(t, c.reg, repo+":1", types.OCIImageIndex)
		src := "docker://" + strings.TrimPrefix(c.tap.URL, "http://") + "/" + repo + ":1"
		// copyTo copies src with skopeo [global...] copy [flag]; global
		// options go before the subcommand.
		copyTo := func(global []string, flag string) string {
			t.Helper()
			dir := filepath.Join(t.TempDir(), "image")
			args := append(append([]string{"--insecure-policy"}, global...), "copy", "--src-tls-verify=false")
			if flag != "" {
				args = append(args, flag)
			}
			mustRun(t, env, skopeo, append(args, src, "dir:"+dir)...)
			return dir
		}
		prefix := "/v2/" + repo + "/"

		dir := copyTo(nil, "--all")
		if got := fileDigest(t, filepath.Join(dir, "manifest.json")); got != want.String() {
			t.Errorf("copy --all: index digest got %s, want %s", got, want)
		}
		for _, img := range imgs {
			d, _ := img.Digest()
			if got := fileDigest(t, filepath.Join(dir, d.Hex+".manifest.json")); got != d.String() {
				t.Errorf("copy --all: instance manifest %s has digest %s", d, got)
			}
		}
		all := append(blobsOf(t, imgs["amd64"]), blobsOf(t, imgs["arm64"])...)
		for _, b := range all {
			if got := fileDigest(t, filepath.Join(dir, strings.TrimPrefix(b, "sha256:"))); got != b {
				t.Errorf("copy --all: blob %s has digest %s", b, got)
			}
		}
		c.pulled(t, "copy --all", prefix, "", want, all, "miss")

		// One platform, by a client with nothing cached: served from the cache.
		dir = copyTo([]string{"--override-arch", "arm64", "--override-variant", "v8"}, "")
		wantArm, _ := imgs["arm64"].Digest()
		if got := fileDigest(t, filepath.Join(dir, "manifest.json")); got != wantArm.String() {
			t.Errorf("arm64 copy: manifest digest got %s, want %s", got, wantArm)
		}
		c.pulled(t, "arm64 copy", prefix, "", want, blobsOf(t, imgs["arm64"]), "hit")
	})
}

// crane digest resolves a tag with HEAD (falling back to GET when the
// answer lacks the length or digest it needs), crane pull GETs it; both
// must name the index, and the pulled image must be the platform's.
func TestCraneDigestAndPull(t *testing.T) {
	c := newClientStack(t)
	crane := testenv.Tool(t, "crane")
	c.each(t, func(t *testing.T, b backend) {
		repo := "library/ptcrane-" + b.name
		want, imgs := seedMultiArch(t, c.reg, repo+":1", types.OCIImageIndex)
		ref := strings.TrimPrefix(c.tap.URL, "http://") + "/" + repo + ":1"
		run := func(args ...string) string {
			t.Helper()
			return mustRun(t, c.clientEnv(), crane, append(args, "--insecure")...)
		}
		prefix := "/v2/" + repo + "/"

		lines := strings.Split(strings.TrimSpace(run("digest", ref)), "\n")
		if got := lines[len(lines)-1]; got != want.String() {
			t.Errorf("crane digest: got %q, want %s", got, want)
		}
		c.tap.requireOnly(t, "crane digest", prefix, "")
		c.tap.requireTag(t, "crane digest", "1", want)
		c.checkCounts(t, "crane digest", nil, true)

		dir := filepath.Join(t.TempDir(), "oci")
		run("pull", "--format", "oci", "--platform", "linux/arm64/v8", ref, dir)
		idx, err := layout.ImageIndexFromPath(dir)
		if err != nil {
			t.Fatal(err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		wantArm, _ := imgs["arm64"].Digest()
		if len(im.Manifests) != 1 || im.Manifests[0].Digest != wantArm {
			t.Errorf("crane pull: layout holds %v, want the one image %s", im.Manifests, wantArm)
		}
		c.pulled(t, "crane pull", prefix, "", want, blobsOf(t, imgs["arm64"]), "miss")
	})
}

// mustRun runs a client command, failing the test (with its output) if it
// fails.
func mustRun(t *testing.T, env []string, bin string, args ...string) string {
	t.Helper()
	out, err := testenv.Run(t, clientTimeout, env, bin, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return out
}

// seedMultiArch pushes a linux/amd64 + linux/arm64/v8 index (or Docker
// manifest list) of two-layer images with real platform configs, so clients
// can select and unpack them. It returns the index digest and the images
// keyed by architecture.
func seedMultiArch(t *testing.T, reg *url.URL, repoTag string, indexType types.MediaType) (v1.Hash, map[string]v1.Image) {
	t.Helper()
	manifestType, configType, layerType := types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayer
	if indexType == types.DockerManifestList {
		manifestType, configType, layerType = types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerLayer
	}
	ref, err := name.ParseReference(reg.Host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	index := v1.IndexManifest{SchemaVersion: 2, MediaType: indexType}
	imgs := map[string]v1.Image{}
	for _, p := range []v1.Platform{amd64, arm64} {
		img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, manifestType), configType)
		for range 2 {
			l, err := random.Layer(192<<10, layerType)
			if err != nil {
				t.Fatal(err)
			}
			if img, err = mutate.AppendLayers(img, l); err != nil {
				t.Fatal(err)
			}
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
		cf.Created = v1.Time{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		dgst, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref.Context().Digest(dgst.String()), img); err != nil {
			t.Fatalf("seed %s: %v", repoTag, err)
		}
		size, _ := img.Size()
		index.Manifests = append(index.Manifests, v1.Descriptor{MediaType: manifestType, Digest: dgst, Size: size, Platform: &p})
		imgs[p.Architecture] = img
	}
	// Written by hand rather than with mutate.AppendManifests, which adds
	// an artifactType to each entry that image indexes on Docker Hub do not
	// have (and that makes skopeo rewrite the list).
	raw, err := json.Marshal(index)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(ref, rawManifest{raw: raw, mediaType: indexType}); err != nil {
		t.Fatalf("seed %s: %v", repoTag, err)
	}
	dgst, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return dgst, imgs
}

type rawManifest struct {
	raw       []byte
	mediaType types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mediaType, nil }

// blobsOf lists an image's config and layer digests.
func blobsOf(t *testing.T, img v1.Image) []string {
	t.Helper()
	cfg, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	out := []string{cfg.String()}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.String())
	}
	return out
}

func fileDigest(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// tap is a reverse proxy in front of the mirror that records each request
// a client sent and the mirror's answer. Its target can change between
// steps of a test (see clientStack.each).
type tap struct {
	URL string

	target atomic.Pointer[url.URL]
	mu     sync.Mutex
	seen   []tapped
	marks  []int // where each Reset happened, for the failure log
	// inflight counts requests whose answer has not ended. A client may
	// finish before the tap records its last request: go-containerregistry
	// stops reading a blob at its descriptor's size, and a streamed answer
	// without Content-Length (a function URL's) ends a little later.
	inflight atomic.Int32
}

type tapped struct {
	method, uri, accept, rng string
	status                   int
	digest                   string // the mirror's Docker-Content-Digest
	bodyDigest               string // of a manifest GET's body
	cache                    string // the mirror's X-Pullthrough-Cache
}

func (r tapped) String() string {
	s := fmt.Sprintf("%s %s -> %d", r.method, r.uri, r.status)
	if r.cache != "" {
		s += " cache=" + r.cache
	}
	if r.digest != "" && !strings.Contains(r.uri, r.digest) {
		s += " digest=" + r.digest
	}
	if r.bodyDigest != "" && !strings.Contains(r.uri, r.bodyDigest) {
		s += " body=" + r.bodyDigest
	}
	if r.rng != "" {
		s += " Range: " + r.rng
	}
	if r.accept != "" {
		s += " Accept: " + r.accept
	}
	return s
}

func newTap(t *testing.T, target string) *tap {
	t.Helper()
	tp := &tap{}
	tp.retarget(t, target)
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(tp.target.Load())
			r.Out.Host = r.In.Host
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			// 499: the client hung up (containerd cancels sibling downloads
			// when one fails); 502: the mirror did not answer.
			status := http.StatusBadGateway
			if r.Context().Err() != nil {
				status = 499
			}
			w.WriteHeader(status)
		},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tp.inflight.Add(1)
		defer tp.inflight.Add(-1)
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/") {
			sw.body = sha256.New()
		}
		// Recorded even when the copy is cut: ReverseProxy panics with
		// http.ErrAbortHandler if the client hangs up first, as
		// go-containerregistry does once it has read a blob's descriptor
		// size of a chunked (function URL) answer.
		defer func() {
			rec := tapped{
				method: r.Method, uri: r.URL.RequestURI(), accept: strings.Join(r.Header.Values("Accept"), ", "), rng: r.Header.Get("Range"),
				status: sw.status, digest: w.Header().Get("Docker-Content-Digest"), cache: w.Header().Get("X-Pullthrough-Cache"),
			}
			if sw.body != nil {
				rec.bodyDigest = "sha256:" + hex.EncodeToString(sw.body.Sum(nil))
			}
			tp.mu.Lock()
			defer tp.mu.Unlock()
			tp.seen = append(tp.seen, rec)
		}()
		rp.ServeHTTP(sw, r)
	}))
	t.Cleanup(srv.Close)
	tp.URL = srv.URL
	return tp
}

// retarget sends the tap's traffic to target from now on.
func (tp *tap) retarget(t *testing.T, target string) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	tp.target.Store(u)
}

// requests returns what the tap saw since the last Reset.
func (tp *tap) requests() []tapped {
	// Let answers still ending be recorded (at most 5 s).
	for deadline := time.Now().Add(5 * time.Second); tp.inflight.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	from := 0
	if len(tp.marks) > 0 {
		from = tp.marks[len(tp.marks)-1]
	}
	return slices.Clone(tp.seen[from:])
}

func (tp *tap) Reset() {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.marks = append(tp.marks, len(tp.seen))
}

// String is every request seen, a line between the steps of a test.
func (tp *tap) String() string {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	var b strings.Builder
	for i, r := range tp.seen {
		if slices.Contains(tp.marks, i) {
			b.WriteString("  --\n")
		}
		fmt.Fprintf(&b, "  %s\n", r)
	}
	return b.String()
}

// requireOnly checks that every request was the version check or under
// prefix, carried query (when set), and got no error from the mirror.
func (tp *tap) requireOnly(t *testing.T, what, prefix, query string) {
	t.Helper()
	reqs := tp.requests()
	if len(reqs) == 0 {
		t.Errorf("%s: the client sent the mirror nothing", what)
	}
	for _, r := range reqs {
		path, q, _ := strings.Cut(r.uri, "?")
		switch {
		case r.status >= 400:
			t.Errorf("%s: the mirror answered %s", what, r)
		case path != "/v2/" && !strings.HasPrefix(path, prefix):
			t.Errorf("%s: unexpected request %s, want paths under %s", what, r, prefix)
		case query != "" && path != "/v2/" && q != query:
			t.Errorf("%s: request %s, want query %q", what, r, query)
		}
	}
}

// requireTag checks that the client asked for the tag and every answer
// named the index: by its Docker-Content-Digest or, where the mirror sends
// none (in Lambda, see proxy.Config.NoContentLength), by the body's digest
// (a HEAD then names nothing and the client must have asked again with
// GET).
func (tp *tap) requireTag(t *testing.T, what, tag string, want v1.Hash) {
	t.Helper()
	asked, named := false, false
	for _, r := range tp.requests() {
		path, _, _ := strings.Cut(r.uri, "?")
		if !strings.HasSuffix(path, "/manifests/"+tag) {
			continue
		}
		asked = true
		ok := r.status == http.StatusOK
		switch {
		case r.digest != "":
			ok = ok && r.digest == want.String() && (r.bodyDigest == "" || r.bodyDigest == want.String())
			named = named || ok
		case r.method == http.MethodGet:
			ok = ok && r.bodyDigest == want.String()
			named = named || ok
		}
		if !ok {
			t.Errorf("%s: %s, want 200 naming %s", what, r, want)
		}
	}
	switch {
	case !asked:
		t.Errorf("%s: the client never asked the mirror for tag %s", what, tag)
	case !named:
		t.Errorf("%s: no answer for tag %s named %s (a HEAD without a digest, and no GET after it)", what, tag, want)
	}
}

// blobGets lists the blobs the client GET since the last Reset, sorted.
func (tp *tap) blobGets() []string {
	var got []string
	for _, r := range tp.requests() {
		path, _, _ := strings.Cut(r.uri, "?")
		if _, dgst, ok := strings.Cut(path, "/blobs/"); ok && r.method == http.MethodGet {
			got = append(got, dgst)
		}
	}
	slices.Sort(got)
	return slices.Compact(got)
}

// asked reports whether the client sent a request for a path ending in
// suffix since the last Reset.
func (tp *tap) asked(suffix string) bool {
	return slices.ContainsFunc(tp.requests(), func(r tapped) bool {
		path, _, _ := strings.Cut(r.uri, "?")
		return strings.HasSuffix(path, suffix)
	})
}

// requireBlobs checks that the client fetched exactly the blobs want, each
// answered with a redirect and the given cache result.
func (tp *tap) requireBlobs(t *testing.T, what string, want []string, cache string) {
	t.Helper()
	for _, r := range tp.requests() {
		path, _, _ := strings.Cut(r.uri, "?")
		if !strings.Contains(path, "/blobs/") || r.method != http.MethodGet {
			continue
		}
		// A miss is streamed while it fills (200) or, once filled
		// elsewhere, redirected to the store; a hit is always a redirect.
		streamed := cache == "miss" && r.status == http.StatusOK
		if (r.status != http.StatusTemporaryRedirect && !streamed) || r.cache != cache {
			t.Errorf("%s: %s, want 307 (or a streamed 200 on a miss) cache=%s", what, r, cache)
		}
	}
	got := tp.blobGets()
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		t.Errorf("%s: client fetched blobs %v, want %v", what, got, want)
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
	body   hash.Hash // if set, hashes what is written
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.body != nil {
		w.body.Write(p)
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// trap is the HTTP(S) proxy the clients are given: it refuses and records
// every request, so a client that falls back to the real registry fails
// fast, on loopback, and visibly.
type trap struct {
	URL string

	mu    sync.Mutex
	hosts []string
}

func newTrap(t *testing.T) *trap {
	t.Helper()
	tr := &trap{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.mu.Lock()
		tr.hosts = append(tr.hosts, r.Method+" "+r.Host)
		tr.mu.Unlock()
		http.Error(w, "no network in tests", http.StatusForbidden)
	}))
	t.Cleanup(srv.Close)
	tr.URL = srv.URL
	return tr
}

func (tr *trap) Count() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.hosts)
}

// Reset forgets the attempts seen so far.
func (tr *trap) Reset() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.hosts = nil
}

func (tr *trap) Hosts() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return slices.Clone(tr.hosts)
}

// A layer download cut halfway is resumed, not restarted: dockerd asks the
// mirror again with a Range header for the rest. With S3 the cut happens
// between dockerd and S3 (the presigned URLs point at a cutting front) and
// the mirror's 307 sends the ranged request to S3, which answers 206; with
// the filesystem store (make run) the cut is in front of the mirror, which
// answers the 206 itself. The upstream is not asked again.
func TestDockerdResumesACutLayerDownload(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real client daemons")
	}
	for _, backend := range []string{"s3", "filesystem"} {
		t.Run(backend, func(t *testing.T) {
			s := newStack(t)
			bin := testenv.BuildMirror(t, false)
			upstreams := "PULLTHROUGH_UPSTREAMS=docker.io=" + s.up.URL.String()
			// The cutting front: a fault-injecting proxy that cuts the first
			// layer download (configs are smaller) halfway.
			var cut *testenv.Upstream
			var front string
			wantMirror := http.StatusTemporaryRedirect
			if backend == "s3" {
				s3URL, _ := url.Parse(s.s3.Endpoint)
				cut = testenv.NewUpstream(t, s3URL)
				front, _ = testenv.StartMirror(t, bin, s.env(upstreams, "AWS_ENDPOINT_URL_S3="+cut.URL.String())...)
			} else {
				mirror, _ := testenv.StartMirror(t, bin, upstreams, "PULLTHROUGH_STORE=file://"+t.TempDir())
				mirrorURL, _ := url.Parse(mirror)
				cut = testenv.NewUpstream(t, mirrorURL)
				front, wantMirror = cut.URL.String(), http.StatusPartialContent
			}
			c := &clientStack{stack: s, tap: newTap(t, front), trap: newTrap(t)}
			_, imgs := seedMultiArch(t, s.reg, "library/ptresume:1", types.DockerManifestList)
			if backend == "s3" {
				// A cold blob is streamed by the mirror, not read from S3:
				// fill the blobs first, so the pull reads them from S3 (the
				// manifest first, as clients do, which links the blobs).
				amd64, _ := imgs["amd64"].Digest()
				mustGet(t, front+"/v2/library/ptresume/manifests/"+amd64.String())
				for _, b := range blobsOf(t, imgs["amd64"]) {
					mustGet(t, front+"/v2/library/ptresume/blobs/"+b)
				}
			}
			cut.CutOnce(64 << 10)
			ctd := testenv.StartContainerd(t)
			d := testenv.StartDockerd(t, ctd, map[string]any{"registry-mirrors": []string{c.tap.URL}}, c.clientEnv()...)
			env := append(c.clientEnv(), "DOCKER_CONFIG="+t.TempDir(), "DOCKER_HOST="+d.Host)
			docker := testenv.Tool(t, "docker")

			// dockerd waits 5 s before its first retry.
			if out, err := testenv.Run(t, clientTimeout, env, docker, "pull", "library/ptresume:1"); err != nil {
				t.Fatalf("docker pull: %v\n%s\nrequests:\n%s", err, out, c.tap)
			}
			out, err := testenv.Run(t, clientTimeout, env, docker, "image", "inspect", "--format", "{{.Id}}", "ptresume:1")
			if want, _ := imgs["amd64"].ConfigName(); err != nil || strings.TrimSpace(out) != want.String() {
				t.Errorf("image inspect: %q %v, want %s", out, err, want)
			}
			cutPath, ranged := cut.Cut()
			if cutPath == "" {
				t.Fatal("no layer download was cut")
			}
			if len(ranged) == 0 {
				t.Fatalf("after the cut of %s no ranged request came", cutPath)
			}
			for _, r := range ranged {
				if r.Path != cutPath || r.Status != http.StatusPartialContent || !strings.HasPrefix(r.Range, "bytes=") || strings.HasPrefix(r.Range, "bytes=0-") {
					t.Errorf("resume: %s Range %q -> %d, want a 206 for the rest of %s", r.Path, r.Range, r.Status, cutPath)
				}
			}
			resumed := false
			for _, r := range c.tap.requests() {
				if strings.Contains(r.uri, "/blobs/") && r.rng != "" && r.status == wantMirror {
					resumed = true
				}
			}
			if !resumed {
				t.Errorf("the mirror answered no ranged blob GET with %d:\n%s", wantMirror, c.tap)
			}
			c.checkCounts(t, "resumed pull", blobsOf(t, imgs["amd64"]), true)
		})
	}
}
