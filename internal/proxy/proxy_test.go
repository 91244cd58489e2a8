package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/store"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

type mirror struct {
	URL   string
	Proxy *proxy.Proxy
	Store *store.Filesystem
	Up    *testenv.Upstream
	Logs  *logBuffer
}

// newMirror serves a proxy over a filesystem store in front of a counting,
// fault-injecting wrapper of a real in-process registry.
func newMirror(t *testing.T, cfg proxy.Config, upCfg proxy.UpstreamConfig) (*mirror, *url.URL) {
	t.Helper()
	reg := testenv.InProcessRegistry(t)
	up := testenv.NewUpstream(t, reg)
	m := mirrorFor(t, cfg, upCfg, up)
	return m, reg
}

func mirrorFor(t *testing.T, cfg proxy.Config, upCfg proxy.UpstreamConfig, up *testenv.Upstream) *mirror {
	t.Helper()
	upCfg.URL = up.URL.String()
	m := multiMirror(t, cfg, upCfg)
	m.Up = up
	return m
}

// multiMirror serves a proxy over a fresh filesystem store with the given
// upstreams (URLs set by the caller).
func multiMirror(t *testing.T, cfg proxy.Config, upCfgs ...proxy.UpstreamConfig) *mirror {
	t.Helper()
	h, m := newProxy(t, cfg, upCfgs...)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	m.URL = srv.URL
	return m
}

// newProxy builds a proxy over a fresh filesystem store, logging into the
// returned mirror's Logs; the caller serves it.
func newProxy(t *testing.T, cfg proxy.Config, upCfgs ...proxy.UpstreamConfig) (*proxy.Proxy, *mirror) {
	t.Helper()
	st, err := store.NewFilesystem(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return newProxyOn(t, st, cfg, upCfgs...)
}

// newProxyOn is newProxy over st, for instances that share a store.
func newProxyOn(t *testing.T, st *store.Filesystem, cfg proxy.Config, upCfgs ...proxy.UpstreamConfig) (*proxy.Proxy, *mirror) {
	t.Helper()
	var ups []*proxy.Upstream
	for _, c := range upCfgs {
		u, err := proxy.NewUpstream(c)
		if err != nil {
			t.Fatal(err)
		}
		ups = append(ups, u)
	}
	logs := &logBuffer{}
	h, err := proxy.New(cfg, st, ups, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { waitFills(t, h) })
	return h, &mirror{Proxy: h, Store: st, Logs: logs}
}

// waitFills lets the proxy's fills end before the test's store goes.
func waitFills(t *testing.T, h *proxy.Proxy) {
	if !h.WaitFills(20 * time.Second) {
		t.Error("a fill still runs 20s after the test")
	}
}

func TestPullTwiceSecondPullMakesNoBlobRequests(t *testing.T) {
	m, reg := newMirror(t, proxy.Config{ManifestTTL: time.Hour}, proxy.UpstreamConfig{})
	want := testenv.SeedImage(t, reg, "library/alpine:3.20", 64<<10, 3)
	wantDigest, _ := want.Digest()

	got := testenv.PullImage(t, m.URL, "library/alpine:3.20")
	if got != wantDigest {
		t.Fatalf("got manifest %s, want %s", got, wantDigest)
	}
	if n := m.Up.Count(http.MethodGet, "blob"); n != 4 { // 3 layers + config
		t.Errorf("first pull: got %d upstream blob GETs, want 4", n)
	}
	m.Up.Reset()
	testenv.PullImage(t, m.URL, "library/alpine:3.20")
	if n := m.Up.Count("", "blob"); n != 0 {
		t.Errorf("second pull: got %d upstream blob requests, want 0", n)
	}
	if n := m.Up.Total(); n != 0 {
		t.Errorf("second pull within TTL: got %d upstream requests, want 0", n)
	}
}

func TestMultiArchIndex(t *testing.T) {
	m, reg := newMirror(t, proxy.Config{ManifestTTL: time.Hour}, proxy.UpstreamConfig{})
	idx := testenv.SeedIndex(t, reg, "org/multi:v1", 16<<10, 2, 3)
	want, _ := idx.Digest()
	if got := testenv.PullIndex(t, m.URL, "org/multi:v1"); got != want {
		t.Fatalf("got index %s, want %s", got, want)
	}
	m.Up.Reset()
	testenv.PullIndex(t, m.URL, "org/multi:v1")
	if n := m.Up.Total(); n != 0 {
		t.Errorf("second pull: got %d upstream requests, want 0", n)
	}
}

func TestUpstreamDownServesCache(t *testing.T) {
	m, reg := newMirror(t, proxy.Config{ManifestTTL: time.Hour}, proxy.UpstreamConfig{})
	img := testenv.SeedImage(t, reg, "library/busybox:1", 8<<10, 2)
	d, _ := img.Digest()
	testenv.PullImage(t, m.URL, "library/busybox:1")

	m.Up.SetFault(testenv.FaultDown, "")
	if got := testenv.PullImage(t, m.URL, "library/busybox@"+d.String()); got != d {
		t.Errorf("by digest with upstream down: got %s, want %s", got, d)
	}
	if got := testenv.PullImage(t, m.URL, "library/busybox:1"); got != d {
		t.Errorf("tag within TTL with upstream down: got %s, want %s", got, d)
	}
}

func TestExpiredTagServedStaleWhenUpstreamFails(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault testenv.Fault
	}{
		{"down", testenv.FaultDown},
		{"429", testenv.Fault429},
		{"500", testenv.Fault500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, reg := newMirror(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{})
			img := testenv.SeedImage(t, reg, "library/redis:7", 4<<10, 1)
			d, _ := img.Digest()
			testenv.PullImage(t, m.URL, "library/redis:7")

			m.Up.SetFault(tc.fault, "")
			resp := do(t, http.MethodGet, m.URL+"/v2/library/redis/manifests/7", nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("got status %d, want 200 (stale)", resp.StatusCode)
			}
			if got := resp.Header.Get("Docker-Content-Digest"); got != d.String() {
				t.Errorf("got digest %s, want %s", got, d)
			}
			if got := resp.Header.Get("X-Pullthrough-Cache"); got != "stale" {
				t.Errorf("got cache %q, want stale", got)
			}
		})
	}
}

func TestRevalidationUsesHeadAndFollowsMovedTag(t *testing.T) {
	m, reg := newMirror(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{})
	testenv.SeedImage(t, reg, "library/nginx:latest", 4<<10, 1)
	testenv.PullImage(t, m.URL, "library/nginx:latest")

	// Unchanged tag: revalidated with HEAD only, never a counted GET.
	m.Up.Reset()
	resp := do(t, http.MethodGet, m.URL+"/v2/library/nginx/manifests/latest", nil)
	if got := resp.Header.Get("X-Pullthrough-Cache"); got != "revalidated" {
		t.Errorf("got cache %q, want revalidated", got)
	}
	if g, h := m.Up.Count(http.MethodGet, "manifest"), m.Up.Count(http.MethodHead, "manifest"); g != 0 || h != 1 {
		t.Errorf("revalidation: got %d GET and %d HEAD manifest requests upstream, want 0 and 1", g, h)
	}

	// The tag moves upstream: the next request serves the new manifest.
	moved := testenv.SeedImage(t, reg, "library/nginx:latest", 4<<10, 2)
	want, _ := moved.Digest()
	if got := testenv.PullImage(t, m.URL, "library/nginx:latest"); got != want {
		t.Errorf("after tag moved: got %s, want %s", got, want)
	}
}

func TestCorruptOrTruncatedBlobIsNeverStored(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault testenv.Fault
	}{
		{"corrupt", testenv.FaultCorrupt},
		{"truncated", testenv.FaultTruncate},
		// A connection cut short of the announced length is resumed, and
		// the whole verified: TestFillResumesCutTransfers.
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, reg := newMirror(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{})
			img := testenv.SeedImage(t, reg, "org/app:1", 32<<10, 1)
			layers, _ := img.Layers()
			ld, _ := layers[0].Digest()
			blobURL := m.URL + "/v2/org/app/blobs/" + ld.String()

			m.Up.SetFault(tc.fault, "blob")
			// A fill that fails before the first byte reaches the client
			// is an error answer; one that fails while streaming cuts the
			// transfer. Never a whole body.
			resp, err := http.Get(blobURL)
			if err != nil {
				t.Fatal(err)
			}
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusOK:
				if rerr == nil {
					t.Errorf("streamed bad bytes: got a complete %d-byte body, want the transfer cut", len(body))
				}
			case resp.StatusCode < 500 || resp.StatusCode > 503:
				t.Errorf("got status %d, want 502/503 or a cut stream", resp.StatusCode)
			default:
				assertOCIError(t, response{Response: resp, body: body}, "UNAVAILABLE")
			}
			if _, err := m.Store.Stat(context.Background(), "blobs/sha256/"+ld.Hex); err == nil {
				t.Fatalf("bad bytes were stored")
			}

			m.Up.SetFault(testenv.FaultNone, "")
			healthy := do(t, http.MethodGet, blobURL, nil)
			if healthy.StatusCode != http.StatusOK {
				t.Fatalf("healthy retry: got %d, want 200", healthy.StatusCode)
			}
			rc, _ := layers[0].Compressed()
			want, _ := io.ReadAll(rc)
			if !bytes.Equal(healthy.body, want) {
				t.Errorf("healthy retry: body differs from the layer")
			}
		})
	}
}

func TestBlobHeadMissDoesNotDownload(t *testing.T) {
	m, reg := newMirror(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{})
	img := testenv.SeedImage(t, reg, "org/app:1", 32<<10, 1)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	size, _ := layers[0].Size()

	resp := do(t, http.MethodHead, m.URL+"/v2/org/app/blobs/"+ld.String(), nil)
	if resp.StatusCode != http.StatusOK || resp.ContentLength != size || resp.Header.Get("Docker-Content-Digest") != ld.String() {
		t.Fatalf("got %d, length %d, digest %q; want 200, %d, %s", resp.StatusCode, resp.ContentLength, resp.Header.Get("Docker-Content-Digest"), size, ld)
	}
	if n := m.Up.Count(http.MethodGet, "blob"); n != 0 {
		t.Errorf("got %d upstream blob GETs for a HEAD, want 0", n)
	}
}

func TestBlobRangeOnFilesystemStore(t *testing.T) {
	m, reg := newMirror(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{})
	img := testenv.SeedImage(t, reg, "org/app:1", 32<<10, 1)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	rc, _ := layers[0].Compressed()
	full, _ := io.ReadAll(rc)
	blobURL := m.URL + "/v2/org/app/blobs/" + ld.String()
	do(t, http.MethodGet, blobURL, nil) // fill

	resp := do(t, http.MethodGet, blobURL, http.Header{"Range": {"bytes=100-"}})
	if resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("got %d, want 206", resp.StatusCode)
	}
	if !bytes.Equal(resp.body, full[100:]) {
		t.Errorf("ranged body differs")
	}
}

func TestConditionalAndAcceptHeaders(t *testing.T) {
	m, reg := newMirror(t, proxy.Config{ManifestTTL: time.Hour}, proxy.UpstreamConfig{})
	idx := testenv.SeedIndex(t, reg, "org/multi:v1", 4<<10, 1, 2)
	id, _ := idx.Digest()
	testenv.PullIndex(t, m.URL, "org/multi:v1")
	u := m.URL + "/v2/org/multi/manifests/v1"

	resp := do(t, http.MethodGet, u, http.Header{"If-None-Match": {`"` + id.String() + `"`}})
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: got %d, want 304", resp.StatusCode)
	}
	resp = do(t, http.MethodHead, u, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != id.String() || resp.Header.Get("Content-Type") != "application/vnd.oci.image.index.v1+json" || resp.ContentLength <= 0 {
		t.Errorf("HEAD: got %d %q %q %d", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), resp.Header.Get("Content-Type"), resp.ContentLength)
	}
	// A client that takes only single-image manifests must not get the
	// cached index.
	resp = do(t, http.MethodGet, u, http.Header{"Accept": {"application/vnd.docker.distribution.manifest.v2+json"}})
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("narrow Accept: got %d %s, want 404", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	assertOCIError(t, resp, "MANIFEST_UNKNOWN")
	resp = do(t, http.MethodGet, m.URL+"/v2/org/multi/manifests/"+id.String(), http.Header{"Accept": {"application/vnd.oci.image.manifest.v1+json"}})
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("narrow Accept by digest: got %d, want 404", resp.StatusCode)
	}
	assertOCIError(t, resp, "MANIFEST_UNKNOWN")
}

func TestBadRequestsGetOCIErrorsAndNoUpstreamCall(t *testing.T) {
	m, _ := newMirror(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{})
	sha := "sha256:" + strings.Repeat("a", 64)
	long := strings.Repeat("a", 10<<10)
	for _, tc := range []struct {
		name, method, path string
		status             int
		code               string
	}{
		{"put", http.MethodPut, "/v2/library/alpine/manifests/latest", 405, "UNSUPPORTED"},
		{"post upload", http.MethodPost, "/v2/library/alpine/blobs/uploads/", 405, "UNSUPPORTED"},
		{"patch", http.MethodPatch, "/v2/library/alpine/blobs/uploads/x", 405, "UNSUPPORTED"},
		{"delete", http.MethodDelete, "/v2/library/alpine/manifests/" + sha, 405, "UNSUPPORTED"},
		{"dot dot name", http.MethodGet, "/v2/../../etc/manifests/latest", 400, "NAME_INVALID"},
		{"dot dot inside", http.MethodGet, "/v2/library/../x/manifests/latest", 400, "NAME_INVALID"},
		{"encoded slash", http.MethodGet, "/v2/library%2Falpine/manifests/latest", 400, "NAME_INVALID"},
		{"encoded dots", http.MethodGet, "/v2/%2e%2e/x/blobs/" + sha, 400, "NAME_INVALID"},
		{"upper case name", http.MethodGet, "/v2/Library/alpine/manifests/latest", 400, "NAME_INVALID"},
		{"huge name", http.MethodGet, "/v2/" + long + "/manifests/latest", 400, "NAME_INVALID"},
		{"long name", http.MethodGet, "/v2/" + strings.Repeat("a", 300) + "/manifests/latest", 400, "NAME_INVALID"},
		{"bad tag", http.MethodGet, "/v2/library/alpine/manifests/-bad", 400, "MANIFEST_INVALID"},
		{"long tag", http.MethodGet, "/v2/library/alpine/manifests/" + strings.Repeat("t", 129), 400, "MANIFEST_INVALID"},
		{"bogus digest", http.MethodGet, "/v2/library/alpine/blobs/sha256:xyz", 400, "DIGEST_INVALID"},
		{"short digest", http.MethodGet, "/v2/library/alpine/blobs/sha256:abcd", 400, "DIGEST_INVALID"},
		{"unknown algorithm", http.MethodGet, "/v2/library/alpine/blobs/md5:" + strings.Repeat("a", 32), 400, "DIGEST_INVALID"},
		{"bogus manifest digest", http.MethodGet, "/v2/library/alpine/manifests/sha256:zz", 400, "DIGEST_INVALID"},
		{"not registry", http.MethodGet, "/metrics", 404, "NOT_FOUND"},
		{"unknown ns", http.MethodGet, "/v2/library/alpine/manifests/latest?ns=evil.example", 404, "NAME_UNKNOWN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, m.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp := send(t, req)
			if resp.StatusCode != tc.status {
				t.Errorf("got %d, want %d", resp.StatusCode, tc.status)
			}
			assertOCIError(t, resp, tc.code)
		})
	}
	if n := m.Up.Total(); n != 0 {
		t.Errorf("bad requests caused %d upstream requests, want 0", n)
	}
	if out, _ := exec.Command("find", m.Store.Root(), "-type", "f").Output(); len(out) != 0 {
		t.Errorf("bad requests wrote to the store:\n%s", out)
	}
}

func TestBaseAndTagsList(t *testing.T) {
	m, reg := newMirror(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{})
	testenv.SeedImage(t, reg, "org/app:1", 1<<10, 1)
	testenv.SeedImage(t, reg, "org/app:2", 1<<10, 1)
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		resp := do(t, method, m.URL+"/v2/", nil)
		if resp.StatusCode != 200 || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
			t.Errorf("%s /v2/: got %d %q", method, resp.StatusCode, resp.Header.Get("Docker-Distribution-API-Version"))
		}
	}
	resp := do(t, http.MethodGet, m.URL+"/v2/org/app/tags/list", nil)
	var tl struct{ Tags []string }
	if err := json.Unmarshal(resp.body, &tl); err != nil || strings.Join(tl.Tags, ",") != "1,2" {
		t.Errorf("tags: got %s (%v), want 1,2", resp.body, err)
	}
	resp = do(t, http.MethodGet, m.URL+"/v2/org/app/tags/list?n=1", nil)
	if err := json.Unmarshal(resp.body, &tl); err != nil || strings.Join(tl.Tags, ",") != "1" {
		t.Errorf("tags n=1: got %s (%v), want 1", resp.body, err)
	}
	m.Up.SetFault(testenv.Fault500, "")
	resp = do(t, http.MethodGet, m.URL+"/v2/org/app/tags/list", nil)
	if resp.StatusCode != 200 || resp.Header.Get("X-Pullthrough-Cache") != "stale" {
		t.Errorf("tags with upstream failing: got %d %q, want 200 stale", resp.StatusCode, resp.Header.Get("X-Pullthrough-Cache"))
	}
}

func TestTokenAuthUpstream(t *testing.T) {
	reg := testenv.InProcessRegistry(t)
	up := testenv.NewUpstream(t, reg)
	testenv.SeedImage(t, reg, "private/app:1", 8<<10, 2)
	up.RequireToken("", "robot", "s3cret-value")
	m := mirrorFor(t, proxy.Config{ManifestTTL: time.Hour}, proxy.UpstreamConfig{Username: "robot", Password: "s3cret-value"}, up)

	testenv.PullImage(t, m.URL, "private/app:1")
	if n := up.Count(http.MethodGet, "token"); n != 1 {
		t.Errorf("got %d token requests for one repository, want 1 (token reused)", n)
	}
	if strings.Contains(m.Logs.String(), "s3cret-value") || strings.Contains(m.Logs.String(), "Bearer") {
		t.Errorf("credentials in logs:\n%s", m.Logs.String())
	}
}

func TestForeignTokenRealmIsNeverCalled(t *testing.T) {
	reg := testenv.InProcessRegistry(t)
	foreign := testenv.NewUpstream(t, reg) // stands for an attacker's host
	up := testenv.NewUpstream(t, reg)
	testenv.SeedImage(t, reg, "private/app:1", 1<<10, 1)
	up.RequireToken(foreign.URL.String()+"/token", "", "")
	m := mirrorFor(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{Username: "robot", Password: "s3cret-value"}, up)

	resp := do(t, http.MethodGet, m.URL+"/v2/private/app/manifests/1", nil)
	if resp.StatusCode < 500 {
		t.Errorf("got %d, want a 5xx UNAVAILABLE", resp.StatusCode)
	}
	assertOCIError(t, resp, "UNAVAILABLE")
	if n := foreign.Total(); n != 0 {
		t.Errorf("foreign realm got %d requests, want 0", n)
	}
}

func TestUpstreamAuthErrorIsNotPassedThrough(t *testing.T) {
	reg := testenv.InProcessRegistry(t)
	up := testenv.NewUpstream(t, reg)
	testenv.SeedImage(t, reg, "private/app:1", 1<<10, 1)
	up.RequireToken("", "robot", "right")
	m := mirrorFor(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{Username: "robot", Password: "wrong"}, up)
	resp := do(t, http.MethodGet, m.URL+"/v2/private/app/manifests/1", nil)
	if resp.StatusCode == http.StatusUnauthorized {
		t.Errorf("upstream 401 passed through to the client")
	}
	if resp.Header.Get("WWW-Authenticate") != "" {
		t.Errorf("upstream challenge passed through")
	}
}

func TestConcurrentMissesShareOneFill(t *testing.T) {
	m, reg := newMirror(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{})
	img := testenv.SeedImage(t, reg, "org/app:1", 1<<20, 1)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	m.Up.SetFault(testenv.FaultSlow, "blob") // keep the fill open while others arrive
	const n = 10
	errs := make(chan error, n)
	for range n {
		go func() {
			resp, err := http.Get(m.URL + "/v2/org/app/blobs/" + ld.String())
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = &statusError{resp.StatusCode}
				}
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got := m.Up.Count(http.MethodGet, "blob"); got != 1 {
		t.Errorf("got %d upstream blob GETs for %d concurrent misses, want 1", got, n)
	}
}

func TestDockerHubOfficialImageNames(t *testing.T) {
	// A single-component name reaches Docker Hub under library/.
	reg := testenv.InProcessRegistry(t)
	up := testenv.NewUpstream(t, reg)
	testenv.SeedImage(t, reg, "library/alpine:3.20", 1<<10, 1)
	m := mirrorFor(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{Host: proxy.DockerHubHost}, up)
	testenv.PullImage(t, m.URL, "alpine:3.20", remote.WithPlatform(v1Platform()))
}

type statusError struct{ code int }

func (e *statusError) Error() string { return http.StatusText(e.code) }

// Behind a front end that drops Content-Length (a Lambda function URL),
// answers for tags carry no Docker-Content-Digest, so that Docker's client
// falls back from HEAD to GET and hashes the body instead of failing on a
// digest without a length; answers by digest keep it.
func TestNoContentLengthHidesTagDigests(t *testing.T) {
	for _, tc := range []struct {
		name            string
		noContentLength bool
	}{
		{"length reaches clients", false},
		{"length dropped", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, reg := newMirror(t, proxy.Config{ManifestTTL: time.Hour, NoContentLength: tc.noContentLength}, proxy.UpstreamConfig{})
			img := testenv.SeedImage(t, reg, "org/img:v1", 4<<10, 1)
			want, _ := img.Digest()
			byTag := m.URL + "/v2/org/img/manifests/v1"
			byDigest := m.URL + "/v2/org/img/manifests/" + want.String()
			for _, rc := range []struct {
				method, url string
				wantDigest  bool
			}{
				{http.MethodHead, byTag, !tc.noContentLength},
				{http.MethodGet, byTag, !tc.noContentLength},
				{http.MethodHead, byDigest, true},
				{http.MethodGet, byDigest, true},
			} {
				resp := do(t, rc.method, rc.url, nil)
				got := resp.Header.Get("Docker-Content-Digest")
				if resp.StatusCode != http.StatusOK || (got != "") != rc.wantDigest || (got != "" && got != want.String()) {
					t.Errorf("%s %s: got %d Docker-Content-Digest %q, want 200 with a digest: %v", rc.method, rc.url, resp.StatusCode, got, rc.wantDigest)
				}
				if rc.method == http.MethodGet {
					if d := digest.FromBytes(resp.body); d.String() != want.String() {
						t.Errorf("GET %s: body digest %s, want %s", rc.url, d, want)
					}
				}
			}
		})
	}
}
