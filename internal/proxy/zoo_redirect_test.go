package proxy_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// TestRedirectToAnotherRegistryHost: a registry.k8s.io-like upstream sends
// every request with a 307 to a regional host under a path prefix, and
// that host wants its own anonymous token. Manifests, blobs and tags work;
// the mirror's configured credentials never reach the regional host or
// its token realm.
func TestRedirectToAnotherRegistryHost(t *testing.T) {
	z := testenv.ZooK8sRegistry(t)
	img := testenv.SeedImage(t, z.Backing, "pause:3.10", 8<<10, 2)
	testenv.SeedImage(t, z.Backing, "pause:3.9", 1<<10, 1)
	up := testenv.NewUpstream(t, z.Front)
	m := mirrorFor(t, proxy.Config{ManifestTTL: time.Hour},
		proxy.UpstreamConfig{Host: "registry.k8s.example", Username: "robot", Password: "k8s-secret-pw", Token: "k8s-static-token"}, up)

	want, _ := img.Digest()
	if got := testenv.PullImage(t, m.URL, "registry.k8s.example/pause:3.10"); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	resp := do(t, http.MethodGet, m.URL+"/v2/registry.k8s.example/pause/tags/list", nil)
	var tl struct{ Tags []string }
	if err := json.Unmarshal(resp.body, &tl); err != nil || strings.Join(tl.Tags, ",") != "3.10,3.9" {
		t.Errorf("tags: got %d %s, want 3.10,3.9", resp.StatusCode, resp.body)
	}
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	size, _ := layers[0].Size()
	resp = do(t, http.MethodHead, m.URL+"/v2/registry.k8s.example/pause/blobs/"+ld.String(), nil)
	if resp.StatusCode != 200 || resp.ContentLength != size {
		t.Errorf("blob HEAD: got %d with length %d, want 200 with %d", resp.StatusCode, resp.ContentLength, size)
	}
	if foreign := z.ForeignAuth(); len(foreign) != 0 {
		t.Errorf("the redirect host received the mirror's credentials: %q", foreign)
	}
}

// TestRedirectorBlobsAreNotHandedOut: with the redirect-upstream policy the
// mirror sends clients to an upstream's signed blob URL; a registry.k8s.io-
// like redirect to another registry's API is no such URL (that host wants
// a token the client does not have), so the mirror fills and serves it.
func TestRedirectorBlobsAreNotHandedOut(t *testing.T) {
	z := testenv.ZooK8sRegistry(t)
	img := testenv.SeedImage(t, z.Backing, "pause:3.10", 8<<10, 1)
	up := testenv.NewUpstream(t, z.Front)
	m := mirrorFor(t, proxy.Config{LargeBlobPolicy: proxy.PolicyUpstream}, proxy.UpstreamConfig{Host: "registry.k8s.example"}, up)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	req, _ := http.NewRequest(http.MethodGet, m.URL+"/v2/registry.k8s.example/pause/blobs/"+ld.String(), nil)
	resp, err := testenv.NoRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("got %d to %q, want 200 from the mirror", resp.StatusCode, resp.Header.Get("Location"))
	}
}
