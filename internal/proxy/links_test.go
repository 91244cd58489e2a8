package proxy_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/store"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// mirrorOver serves a proxy over the filesystem store in dir, so two
// mirrors with different settings can share one cache (an operator who
// adds a deny rule to a mirror that has already cached things).
func mirrorOver(t *testing.T, dir string, cfg proxy.Config, upCfg proxy.UpstreamConfig) string {
	t.Helper()
	st, err := store.NewFilesystem(dir)
	if err != nil {
		t.Fatal(err)
	}
	up, err := proxy.NewUpstream(upCfg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := proxy.New(cfg, st, []*proxy.Upstream{up}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestCachedContentServedOnlyUnderLinkedRepositories: the cache is keyed
// by digest, but a digest is served under a repository only if the mirror
// fetched it for that repository or the upstream confirms the repository
// has it. The upstream is the distribution registry, which scopes blobs and
// manifests to repositories (registry/storage/linkedblobstore.go) as Docker
// Hub does: a digest pushed to one repository is BLOB_UNKNOWN/
// MANIFEST_UNKNOWN in another.
func TestCachedContentServedOnlyUnderLinkedRepositories(t *testing.T) {
	reg := testenv.DistributionRegistry(t)
	up := testenv.NewUpstream(t, reg)
	evil := testenv.SeedImage(t, reg, "evil/miner:v1", 4<<10, 2)
	testenv.SeedImage(t, reg, "library/alpine:1", 4<<10, 1)
	d, _ := evil.Digest()
	cfgDigest, _ := evil.ConfigName()
	layers, _ := evil.Layers()
	layer, _ := layers[0].Digest()

	// Cached while the repository was allowed.
	dir := t.TempDir()
	open := mirrorOver(t, dir, proxy.Config{ManifestTTL: time.Hour}, proxy.UpstreamConfig{URL: up.URL.String()})
	testenv.PullImage(t, open, "evil/miner:v1")

	// The operator then denies it.
	mirror := mirrorOver(t, dir, proxy.Config{ManifestTTL: time.Hour}, proxy.UpstreamConfig{URL: up.URL.String(), Deny: []string{"evil/**"}})
	up.Reset()
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{http.MethodGet, "/v2/evil/miner/manifests/v1", 403, "DENIED"},
		{http.MethodGet, "/v2/evil/miner/manifests/" + d.String(), 403, "DENIED"},
		{http.MethodGet, "/v2/library/alpine/manifests/" + d.String(), 404, "MANIFEST_UNKNOWN"},
		{http.MethodHead, "/v2/library/alpine/manifests/" + d.String(), 404, ""},
		{http.MethodGet, "/v2/library/alpine/blobs/" + layer.String(), 404, "BLOB_UNKNOWN"},
		{http.MethodHead, "/v2/library/alpine/blobs/" + cfgDigest.String(), 404, ""},
		{http.MethodGet, "/v2/someone/else/blobs/" + cfgDigest.String(), 404, "BLOB_UNKNOWN"},
	} {
		resp := do(t, tc.method, mirror+tc.path, nil)
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: got %d, want %d (cache %q)", tc.method, tc.path, resp.StatusCode, tc.status, resp.Header.Get("X-Pullthrough-Cache"))
			continue
		}
		if tc.code != "" {
			assertOCIError(t, resp, tc.code)
		}
	}

	// A repository the upstream confirms has the image gets it from the
	// cache: one manifest HEAD upstream links the manifest and what it
	// references, so no blob is asked for, and the next pull asks nothing.
	ref, _ := name.ParseReference(reg.Host+"/mirrors/miner:v1", name.Insecure)
	if err := remote.Write(ref, evil); err != nil {
		t.Fatal(err)
	}
	up.Reset()
	if got := testenv.PullImage(t, mirror, "mirrors/miner@"+d.String()); got != d {
		t.Fatalf("confirmed repository: got %s, want %s", got, d)
	}
	if h, g, b := up.Count(http.MethodHead, "manifest"), up.Count(http.MethodGet, "manifest"), up.Count("", "blob"); h != 1 || g != 0 || b != 0 {
		t.Errorf("confirmed repository: got %d manifest HEADs, %d manifest GETs, %d blob requests upstream; want 1, 0, 0", h, g, b)
	}
	up.Reset()
	testenv.PullImage(t, mirror, "mirrors/miner@"+d.String())
	if n := up.Total(); n != 0 {
		t.Errorf("second pull of a confirmed repository: got %d upstream requests, want 0", n)
	}

	// A blob asked for on its own is confirmed with one blob HEAD.
	ref, _ = name.ParseReference(reg.Host+"/copies/miner:v1", name.Insecure)
	if err := remote.Write(ref, evil); err != nil {
		t.Fatal(err)
	}
	up.Reset()
	resp := do(t, http.MethodGet, mirror+"/v2/copies/miner/blobs/"+layer.String(), nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Pullthrough-Cache") != "hit" {
		t.Errorf("blob of a confirmed repository: got %d (cache %q), want 200 hit", resp.StatusCode, resp.Header.Get("X-Pullthrough-Cache"))
	}
	if h, g := up.Count(http.MethodHead, "blob"), up.Count(http.MethodGet, "blob"); h != 1 || g != 0 {
		t.Errorf("blob of a confirmed repository: got %d blob HEADs and %d GETs upstream, want 1 and 0", h, g)
	}

	// Nobody can confirm while the upstream is down: not served.
	up.SetFault(testenv.FaultDown, "")
	resp = do(t, http.MethodGet, mirror+"/v2/other/app/manifests/"+d.String(), nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("unlinked, upstream down: got %d, want 503", resp.StatusCode)
	}
	assertOCIError(t, resp, "UNAVAILABLE")
	if got := testenv.PullImage(t, mirror, "mirrors/miner@"+d.String()); got != d {
		t.Errorf("linked, upstream down: got %s, want %s from the cache", got, d)
	}
}

// TestIndexCachedForOneRepositoryPulledFromAnother: a multi-platform index
// fetched for a second repository links its children and, since they are
// cached, their blobs: the pull costs the tag's manifest GET and nothing
// else upstream.
func TestIndexCachedForOneRepositoryPulledFromAnother(t *testing.T) {
	m, reg := newMirror(t, proxy.Config{ManifestTTL: time.Hour}, proxy.UpstreamConfig{})
	idx := testenv.SeedIndex(t, reg, "org/multi:v1", 4<<10, 2, 3)
	want, _ := idx.Digest()
	testenv.PullIndex(t, m.URL, "org/multi:v1")
	ref, _ := name.ParseReference(reg.Host+"/org/copy:v1", name.Insecure)
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	m.Up.Reset()
	if got := testenv.PullIndex(t, m.URL, "org/copy:v1"); got != want {
		t.Fatalf("got index %s, want %s", got, want)
	}
	if g, n := m.Up.Count(http.MethodGet, "manifest"), m.Up.Total(); g != 1 || n != 1 {
		t.Errorf("got %d upstream requests (%d manifest GETs), want 1 (the tag's GET)", n, g)
	}
}
