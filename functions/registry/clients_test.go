package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/pullthrough/pullthrough/internal/testenv"
)

// The real-client tests pull a two-platform image through the mirror binary
// with the clients users run, installed from Debian packages by
// scripts/tools.sh: dockerd with registry-mirrors, containerd's ctr with a
// hosts.toml mirror, and skopeo.

const clientTimeout = 2 * time.Minute

var (
	amd64 = v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
)

// clientStack is a mirror of "Docker Hub" that never leaves loopback: the
// mirror binary names its one upstream docker.io (as dockerd's library/
// paths and containerd's ?ns=docker.io expect) and reaches it at the
// counting wrapper. Clients talk to a tap in front of the mirror that
// records what they asked and what the mirror answered; their HTTP proxy is
// a trap that records any attempt to reach the real registry.
type clientStack struct {
	*stack
	tap  *tap
	trap *trap
}

func newClientStack(t *testing.T) *clientStack {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real client daemons")
	}
	s := newStack(t)
	mirror, _ := testenv.StartMirror(t, testenv.BuildMirror(t, false), s.env("PULLTHROUGH_UPSTREAMS=docker.io="+s.up.URL.String())...)
	c := &clientStack{stack: s, tap: newTap(t, mirror), trap: newTrap(t)}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("requests the client sent to the mirror:\n%s", c.tap)
		}
	})
	return c
}

// clientEnv sends a client's traffic to anything but loopback into the trap.
func (c *clientStack) clientEnv() []string {
	return []string{
		"HTTP_PROXY=" + c.trap.URL, "HTTPS_PROXY=" + c.trap.URL,
		"http_proxy=" + c.trap.URL, "https_proxy=" + c.trap.URL,
		"NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost",
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
}

func TestDockerdRegistryMirror(t *testing.T) {
	c := newClientStack(t)
	dgst, imgs := seedMultiArch(t, c.reg, "library/ptdocker:1", types.DockerManifestList)
	ctd := testenv.StartContainerd(t)
	d := testenv.StartDockerd(t, ctd, map[string]any{"registry-mirrors": []string{c.tap.URL}}, c.clientEnv()...)
	docker := testenv.Tool(t, "docker")
	env := append(c.clientEnv(), "DOCKER_CONFIG="+t.TempDir(), "DOCKER_HOST="+d.Host)
	run := func(args ...string) string {
		t.Helper()
		out, err := testenv.Run(t, clientTimeout, env, docker, args...)
		if err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(out)
	}
	inspect := func(format string) string {
		t.Helper()
		return run("image", "inspect", "--format", format, "ptdocker:1")
	}
	// The image ID is the config digest of the platform's image.
	wantInspect := func(p v1.Platform) string {
		cfg, _ := imgs[p.Architecture].ConfigName()
		return fmt.Sprintf("%s %s/%s", cfg, p.OS, p.Architecture)
	}
	const idFormat = "{{.Id}} {{.Os}}/{{.Architecture}}"
	// Pulled by tag from a list, the image records the list's digest.
	wantRepoDigests := fmt.Sprintf(`["ptdocker@%s"]`, dgst)

	// A docker.io name: the daemon goes to its registry-mirrors first.
	run("pull", "library/ptdocker:1")
	if got, want := inspect(idFormat), wantInspect(amd64); got != want {
		t.Errorf("cold pull: image inspect got %q, want %q", got, want)
	}
	if got := inspect("{{json .RepoDigests}}"); got != wantRepoDigests {
		t.Errorf("cold pull: RepoDigests got %s, want %s", got, wantRepoDigests)
	}
	c.tap.requireOnly(t, "cold pull", "/v2/library/ptdocker/", "")
	c.tap.requireTag(t, "cold pull", "1", dgst)
	c.tap.requireBlobs(t, "cold pull", blobsOf(t, imgs["amd64"]), "miss")
	c.checkCounts(t, "cold pull", blobsOf(t, imgs["amd64"]), true)

	// The other platform of the same tag: only its blobs are new.
	run("pull", "--platform", "linux/arm64", "library/ptdocker:1")
	if got, want := inspect(idFormat), wantInspect(arm64); got != want {
		t.Errorf("arm64 pull: image inspect got %q, want %q", got, want)
	}
	c.tap.requireOnly(t, "arm64 pull", "/v2/library/ptdocker/", "")
	c.tap.requireBlobs(t, "arm64 pull", blobsOf(t, imgs["arm64"]), "miss")
	c.checkCounts(t, "arm64 pull", blobsOf(t, imgs["arm64"]), true)

	// Forget both images and pull again: everything comes from the cache.
	amdID, _ := imgs["amd64"].ConfigName()
	armID, _ := imgs["arm64"].ConfigName()
	run("image", "rm", "--force", amdID.String(), armID.String())
	run("pull", "library/ptdocker:1")
	if got, want := inspect(idFormat), wantInspect(amd64); got != want {
		t.Errorf("warm pull: image inspect got %q, want %q", got, want)
	}
	if got := inspect("{{json .RepoDigests}}"); got != wantRepoDigests {
		t.Errorf("warm pull: RepoDigests got %s, want %s", got, wantRepoDigests)
	}
	c.tap.requireOnly(t, "warm pull", "/v2/library/ptdocker/", "")
	c.tap.requireTag(t, "warm pull", "1", dgst)
	c.tap.requireBlobs(t, "warm pull", blobsOf(t, imgs["amd64"]), "hit")
	c.checkCounts(t, "warm pull", nil, false)
}

func TestContainerdHostsMirror(t *testing.T) {
	c := newClientStack(t)
	dgst, imgs := seedMultiArch(t, c.reg, "library/ptctr:1", types.OCIImageIndex)
	ctd := testenv.StartContainerd(t)
	hosts := t.TempDir()
	toml := fmt.Sprintf("server = \"https://registry-1.docker.io\"\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", c.tap.URL)
	if err := os.MkdirAll(filepath.Join(hosts, "docker.io"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hosts, "docker.io", "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	ctr := testenv.Tool(t, "ctr")
	const ref = "docker.io/library/ptctr:1"
	run := func(args ...string) string {
		t.Helper()
		args = append([]string{"--address", ctd.Address}, args...)
		out, err := testenv.Run(t, clientTimeout, c.clientEnv(), ctr, args...)
		if err != nil {
			t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	pull := func(args ...string) {
		t.Helper()
		run(append([]string{"images", "pull", "--hosts-dir", hosts, "--snapshotter", "native"}, append(args, ref)...)...)
	}
	checkImage := func(what string) {
		t.Helper()
		if out := run("images", "ls"); !strings.Contains(out, ref+" ") || !strings.Contains(out, dgst.String()) {
			t.Errorf("%s: ctr images ls does not list %s at %s:\n%s", what, ref, dgst, out)
		}
	}
	content := func() []string {
		t.Helper()
		return strings.Fields(run("content", "ls", "--quiet"))
	}

	pull("--platform", "linux/amd64")
	checkImage("amd64 pull")
	c.tap.requireOnly(t, "amd64 pull", "/v2/library/ptctr/", "ns=docker.io")
	c.tap.requireTag(t, "amd64 pull", "1", dgst)
	c.tap.requireBlobs(t, "amd64 pull", blobsOf(t, imgs["amd64"]), "miss")
	c.checkCounts(t, "amd64 pull", blobsOf(t, imgs["amd64"]), true)

	// containerd has the amd64 blobs: only arm64's are fetched.
	pull("--all-platforms")
	checkImage("all-platforms pull")
	c.tap.requireOnly(t, "all-platforms pull", "/v2/library/ptctr/", "ns=docker.io")
	c.tap.requireBlobs(t, "all-platforms pull", blobsOf(t, imgs["arm64"]), "miss")
	c.checkCounts(t, "all-platforms pull", blobsOf(t, imgs["arm64"]), true)
	have := content()
	for _, b := range append(blobsOf(t, imgs["amd64"]), blobsOf(t, imgs["arm64"])...) {
		if !slices.Contains(have, b) {
			t.Errorf("content store lacks %s after --all-platforms", b)
		}
	}

	// Remove the image and collect its content, then pull it again.
	run("images", "rm", "--sync", ref)
	if left := content(); len(left) != 0 {
		t.Fatalf("content left after images rm --sync: %v", left)
	}
	pull("--all-platforms")
	checkImage("warm pull")
	c.tap.requireOnly(t, "warm pull", "/v2/library/ptctr/", "ns=docker.io")
	c.tap.requireTag(t, "warm pull", "1", dgst)
	c.tap.requireBlobs(t, "warm pull", append(blobsOf(t, imgs["amd64"]), blobsOf(t, imgs["arm64"])...), "hit")
	c.checkCounts(t, "warm pull", nil, false)
}

func TestSkopeoCopy(t *testing.T) {
	c := newClientStack(t)
	want, imgs := seedMultiArch(t, c.reg, "library/ptskopeo:1", types.OCIImageIndex)
	skopeo := testenv.Tool(t, "skopeo")
	conf := filepath.Join(t.TempDir(), "registries.conf")
	if err := os.WriteFile(conf, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(c.clientEnv(), "CONTAINERS_REGISTRIES_CONF="+conf, "REGISTRY_AUTH_FILE="+filepath.Join(t.TempDir(), "auth.json"))
	src := "docker://" + strings.TrimPrefix(c.tap.URL, "http://") + "/library/ptskopeo:1"
	// copyTo copies src with skopeo [global...] copy [flag]; global
	// options go before the subcommand.
	copyTo := func(global []string, flag string) string {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "image")
		args := append(append([]string{"--insecure-policy"}, global...), "copy", "--src-tls-verify=false")
		if flag != "" {
			args = append(args, flag)
		}
		args = append(args, src, "dir:"+dir)
		if out, err := testenv.Run(t, clientTimeout, env, skopeo, args...); err != nil {
			t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return dir
	}

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
	c.tap.requireOnly(t, "copy --all", "/v2/library/ptskopeo/", "")
	c.tap.requireTag(t, "copy --all", "1", want)
	c.tap.requireBlobs(t, "copy --all", all, "miss")
	c.checkCounts(t, "copy --all", all, true)

	// One platform, by a client with nothing cached: served from the cache.
	dir = copyTo([]string{"--override-arch", "arm64", "--override-variant", "v8"}, "")
	wantArm, _ := imgs["arm64"].Digest()
	if got := fileDigest(t, filepath.Join(dir, "manifest.json")); got != wantArm.String() {
		t.Errorf("arm64 copy: manifest digest got %s, want %s", got, wantArm)
	}
	c.tap.requireOnly(t, "arm64 copy", "/v2/library/ptskopeo/", "")
	c.tap.requireTag(t, "arm64 copy", "1", want)
	c.tap.requireBlobs(t, "arm64 copy", blobsOf(t, imgs["arm64"]), "hit")
	c.checkCounts(t, "arm64 copy", nil, false)
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
// a client sent and the mirror's answer.
type tap struct {
	URL string

	mu    sync.Mutex
	seen  []tapped
	marks []int // where each Reset happened, for the failure log
}

type tapped struct {
	method, uri, accept, rng string
	status                   int
	digest                   string // the mirror's Docker-Content-Digest
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
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	tp := &tap{}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		// 499: the client hung up (containerd cancels sibling downloads
		// when one fails); 502: the mirror did not answer.
		status := http.StatusBadGateway
		if r.Context().Err() != nil {
			status = 499
		}
		w.WriteHeader(status)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		rp.ServeHTTP(sw, r)
		tp.mu.Lock()
		defer tp.mu.Unlock()
		tp.seen = append(tp.seen, tapped{
			method: r.Method, uri: r.URL.RequestURI(), accept: strings.Join(r.Header.Values("Accept"), ", "), rng: r.Header.Get("Range"),
			status: sw.status, digest: w.Header().Get("Docker-Content-Digest"), cache: w.Header().Get("X-Pullthrough-Cache"),
		})
	}))
	t.Cleanup(srv.Close)
	tp.URL = srv.URL
	return tp
}

// requests returns what the tap saw since the last Reset.
func (tp *tap) requests() []tapped {
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
// named the index digest.
func (tp *tap) requireTag(t *testing.T, what, tag string, want v1.Hash) {
	t.Helper()
	n := 0
	for _, r := range tp.requests() {
		path, _, _ := strings.Cut(r.uri, "?")
		if !strings.HasSuffix(path, "/manifests/"+tag) {
			continue
		}
		n++
		if r.status != http.StatusOK || r.digest != want.String() {
			t.Errorf("%s: %s, want 200 digest=%s", what, r, want)
		}
	}
	if n == 0 {
		t.Errorf("%s: the client never asked the mirror for tag %s", what, tag)
	}
}

// requireBlobs checks that the client fetched exactly the blobs want, each
// answered with a redirect and the given cache result.
func (tp *tap) requireBlobs(t *testing.T, what string, want []string, cache string) {
	t.Helper()
	var got []string
	for _, r := range tp.requests() {
		path, _, _ := strings.Cut(r.uri, "?")
		_, dgst, ok := strings.Cut(path, "/blobs/")
		if !ok || r.method != http.MethodGet {
			continue
		}
		got = append(got, dgst)
		if r.status != http.StatusTemporaryRedirect || r.cache != cache {
			t.Errorf("%s: %s, want 307 cache=%s", what, r, cache)
		}
	}
	slices.Sort(got)
	got = slices.Compact(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		t.Errorf("%s: client fetched blobs %v, want %v", what, got, want)
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
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
			cut.CutOnce(64 << 10)
			c := &clientStack{stack: s, tap: newTap(t, front), trap: newTrap(t)}
			_, imgs := seedMultiArch(t, s.reg, "library/ptresume:1", types.DockerManifestList)
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
