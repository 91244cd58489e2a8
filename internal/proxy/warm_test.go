package proxy_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

func TestWarmFillsChosenPlatformsAhead(t *testing.T) {
	reg := testenv.InProcessRegistry(t)
	up := testenv.NewUpstream(t, reg)
	m := mirrorFor(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways, Access: proxy.AccessConfig{Tokens: []string{"warm-token"}}}, proxy.UpstreamConfig{Host: "docker.io"}, up)

	var idx v1.ImageIndex = empty.Index
	for _, arch := range []string{"amd64", "arm64"} {
		img, _ := random.Image(4<<10, 2)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	ref, _ := name.ParseReference(reg.Host+"/library/multi:1", name.Insecure)
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	up.Reset()

	post := func(auth, body string) response {
		req, _ := http.NewRequest(http.MethodPost, m.URL+"/_pullthrough/warm", strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		return send(t, req)
	}
	if resp := post("", `{"image":"multi:1"}`); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without credentials: got %d, want 401", resp.StatusCode)
	}
	resp := post("warm-token", `{"image":"multi:1","platforms":["linux/amd64"]}`)
	if resp.StatusCode != 200 || !strings.HasSuffix(string(resp.body), "done\n") {
		t.Fatalf("warm: got %d %s", resp.StatusCode, resp.body)
	}
	if got := up.Count(http.MethodGet, "blob"); got != 3 { // amd64 config + 2 layers
		t.Errorf("warm linux/amd64: got %d upstream blob GETs, want 3", got)
	}
	up.Reset()
	testenv.PullImage(t, m.URL, "library/multi:1", remote.WithAuth(&bearer{"warm-token"}), remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"}))
	if n := up.Count(http.MethodGet, "blob"); n != 0 {
		t.Errorf("pull after warm: got %d upstream blob GETs, want 0", n)
	}
	if resp := post("warm-token", `{"image":"quay.io/x/y:1"}`); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unconfigured registry: got %d, want 404", resp.StatusCode)
	}
}

func TestWarmEndpointIsOffWithoutClientCredentials(t *testing.T) {
	m, _ := newMirror(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{})
	req, _ := http.NewRequest(http.MethodPost, m.URL+"/_pullthrough/warm", strings.NewReader(`{"image":"alpine"}`))
	resp := send(t, req)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("got %d, want 404", resp.StatusCode)
	}
	if m.Up.Total() != 0 {
		t.Errorf("got %d upstream requests, want 0", m.Up.Total())
	}
}
