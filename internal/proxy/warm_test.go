package proxy_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

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

// An index whose child digest is malformed (a wrong-typed field, which
// decodeSpec leaves empty, or a string that is no digest) fails the warm
// as MANIFEST_INVALID without asking the upstream for that child: an
// empty digest must not become a request for the tag "".
func TestWarmRefusesAnIndexWithAnInvalidChildDigest(t *testing.T) {
	for _, tc := range []struct{ name, digest string }{
		{"wrong type", `5`},
		{"not a digest", `"sha256:../../x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := testenv.InProcessRegistry(t)
			up := testenv.NewUpstream(t, reg)
			m := mirrorFor(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways, Access: proxy.AccessConfig{Tokens: []string{"warm-token"}}}, proxy.UpstreamConfig{Host: "docker.io"}, up)
			index := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` +
				`{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":10,"digest":` + tc.digest + `,"platform":{"os":"linux","architecture":"amd64"}}]}`
			var mu sync.Mutex
			var others []string
			up.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path != "/v2/library/odd/manifests/1" {
					mu.Lock()
					others = append(others, r.Method+" "+r.URL.Path)
					mu.Unlock()
					return false
				}
				dg := digest.FromString(index)
				w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
				w.Header().Set("Docker-Content-Digest", dg.String())
				w.Header().Set("Content-Length", strconv.Itoa(len(index)))
				if r.Method == http.MethodGet {
					io.WriteString(w, index)
				}
				return true
			})
			req, _ := http.NewRequest(http.MethodPost, m.URL+"/_pullthrough/warm", strings.NewReader(`{"image":"odd:1"}`))
			req.Header.Set("Authorization", "Bearer warm-token")
			resp := send(t, req)
			if !strings.Contains(string(resp.body), "error: index names an invalid digest") {
				t.Errorf("got %q, want the warm to fail on the index's invalid digest", resp.body)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, o := range others {
				if strings.Contains(o, "/manifests/") {
					t.Errorf("got upstream request %s, want none for the invalid child", o)
				}
			}
		})
	}
}
