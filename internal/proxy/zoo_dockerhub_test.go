package proxy_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// TestDockerHubLikeLargeBlobGoesToTheCDN: under the redirect-upstream
// large-blob policy a cold blob GET through the mirror sends the client to
// the Docker Hub-like member's signed CDN URL (a third host, outside
// /v2/), which serves the client without credentials; the background fill
// then makes the blob a cache hit. The CDN never sees an Authorization
// header.
func TestDockerHubLikeLargeBlobGoesToTheCDN(t *testing.T) {
	hub := testenv.DockerHubLike(t)
	img := testenv.SeedImage(t, hub.Reg, "library/big:1", 512<<10, 1)
	m := mirrorFor(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways, LargeBlobPolicy: proxy.PolicyUpstream},
		proxy.UpstreamConfig{Host: "hub.example", AuthHosts: hub.AuthHosts()}, hub.Front)
	d, body := layerOf(t, img, 0)
	blobURL := m.URL + "/v2/hub.example/library/big/blobs/" + d.String()

	resp, err := testenv.NoRedirect.Get(blobURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if resp.StatusCode != http.StatusTemporaryRedirect || err != nil || loc.Host != hub.Other.Host || strings.HasPrefix(loc.Path, "/v2/") {
		t.Fatalf("cold GET: got %d to %v, want 307 to the CDN host %s outside /v2/", resp.StatusCode, loc, hub.Other.Host)
	}
	got := do(t, http.MethodGet, loc.String(), nil)
	if got.StatusCode != http.StatusOK || string(got.body) != string(body) {
		t.Errorf("the CDN URL: got %d with %d bytes, want 200 with the layer's %d", got.StatusCode, len(got.body), len(body))
	}
	if hub.RealmRequests() == 0 {
		t.Errorf("the realm host got no request, want the mirror's token flow there")
	}

	deadline := time.Now().Add(20 * time.Second)
	for {
		got = do(t, http.MethodGet, blobURL, nil)
		if got.Header.Get("X-Pullthrough-Cache") == "hit" || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got.StatusCode != http.StatusOK || string(got.body) != string(body) {
		t.Errorf("after the background fill: got %d %q with %d bytes, want a 200 hit with the layer", got.StatusCode, got.Header.Get("X-Pullthrough-Cache"), len(got.body))
	}
	if foreign := hub.ForeignAuth(); len(foreign) != 0 {
		t.Errorf("the member (its CDN included) received %d Authorization headers it did not issue, first %q", len(foreign), foreign[0])
	}
}

// TestDockerHubLikeRealmMustBeConfigured: a mirror not told that the
// member's realm host is an auth host (as Docker Hub's token host is by
// default) refuses the realm without asking it, and answers with an OCI
// error rather than the content.
func TestDockerHubLikeRealmMustBeConfigured(t *testing.T) {
	hub := testenv.DockerHubLike(t)
	testenv.SeedImage(t, hub.Reg, "library/app:1", 1<<10, 1)
	m := mirrorFor(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{Host: "hub.example"}, hub.Front)
	got := do(t, http.MethodGet, m.URL+"/v2/hub.example/library/app/manifests/1", nil)
	if got.StatusCode < 400 || got.StatusCode == http.StatusInternalServerError || !strings.Contains(string(got.body), `"errors"`) {
		t.Errorf("got %d %s, want an OCI error", got.StatusCode, got.body)
	}
	if n := hub.RealmRequests(); n != 0 {
		t.Errorf("the unconfigured realm host got %d requests, want 0", n)
	}
}
