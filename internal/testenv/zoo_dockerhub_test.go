package testenv

import (
	"fmt"
	"hash/fnv"
	"math/rand"
	"net/http"
	"net/url"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestDockerHubLikeAnswersAsDistribution holds the Docker Hub-like
// stand-in to the real thing: the same content in the distribution
// registry and behind the stand-in gets the same status, digest and media
// type for every Accept list, method and reference. The one known
// difference is left out: distribution v3.1.2 serves an OCI index whatever
// the Accept list (see DockerHubManifests), Docker Hub answers 404.
func TestDockerHubLikeAnswersAsDistribution(t *testing.T) {
	real := DistributionRegistry(t)
	hub := DockerHubLike(t)
	seeded := seedAcceptCases(t, real)
	token := hub.PullToken(t, "zoo/accept")
	refs := map[string]string{}
	for tag, d := range seedAcceptCases(t, hub.Reg) {
		if d != seeded[tag] {
			t.Fatalf("%s: seeded %s and %s, want the same bytes in both registries", tag, d, seeded[tag])
		}
		if tag == "index" {
			continue
		}
		refs[tag] = tag
		refs[tag+" by digest"] = d.String()
	}
	accepts := []string{
		"",
		mtDockerManifest,
		mtDockerList,
		mtOCIManifest,
		mtOCIIndex,
		mtDockerManifest + ", " + mtOCIManifest,
		mtDockerManifest + ", " + mtDockerList + ", " + mtOCIManifest + ", " + mtOCIIndex,
		"*/*",
	}
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		for label, ref := range refs {
			for _, accept := range accepts {
				want := answerOf(t, method, real, ref, accept, "")
				got := answerOf(t, method, hub.Front.URL, ref, accept, token)
				if got != want {
					t.Errorf("%s %s (%s) Accept %q: got %s, want %s (distribution's)", method, ref, label, accept, got, want)
				}
			}
		}
	}
}

// seedAcceptCases pushes one manifest of each kind under a tag named after
// it and returns the digests.
func seedAcceptCases(t *testing.T, reg *url.URL) map[string]v1.Hash {
	t.Helper()
	put := func(tag string, w func(name.Reference) error) {
		ref, err := name.ParseReference(reg.Host+"/zoo/accept:"+tag, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := w(ref); err != nil {
			t.Fatalf("seed %s: %v", tag, err)
		}
	}
	img := func(seed string) v1.Image {
		i, err := random.Image(512, 1, random.WithSource(fixedSource(seed)))
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	docker := img("docker")
	oci := mutate.ConfigMediaType(mutate.MediaType(img("oci"), types.OCIManifestSchema1), types.OCIConfigJSON)
	list := mutate.IndexMediaType(empty.Index, types.DockerManifestList)
	noAMD64 := list
	for _, arch := range []string{"arm64", "amd64"} {
		list = mutate.AppendManifests(list, mutate.IndexAddendum{Add: img("list-" + arch), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	noAMD64 = mutate.AppendManifests(noAMD64, mutate.IndexAddendum{Add: img("arm-only"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	index := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: oci, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}})
	out := map[string]v1.Hash{}
	for tag, i := range map[string]v1.Image{"docker": docker, "oci": oci} {
		put(tag, func(r name.Reference) error { return remote.Write(r, i) })
		out[tag], _ = i.Digest()
	}
	for tag, i := range map[string]v1.ImageIndex{"list": list, "list-no-amd64": noAMD64, "index": index} {
		put(tag, func(r name.Reference) error { return remote.WriteIndex(r, i) })
		out[tag], _ = i.Digest()
	}
	return out
}

// fixedSource is a random source that depends only on seed, so two
// registries can be given the same "random" content.
func fixedSource(seed string) rand.Source {
	h := fnv.New64a()
	h.Write([]byte(seed))
	return rand.NewSource(int64(h.Sum64()))
}

// answerOf is what a client notices of a manifest answer.
func answerOf(t *testing.T, method string, base *url.URL, ref, accept, auth string) string {
	t.Helper()
	req, err := http.NewRequest(method, base.String()+"/v2/zoo/accept/manifests/"+ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprint(resp.StatusCode)
	}
	return fmt.Sprintf("%d %s %s", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), resp.Header.Get("Content-Type"))
}

// TestDockerHubLikeRateLimit: manifest GETs count against the limit and
// say so in their headers; HEADs do not count; past the limit GETs get 429.
func TestDockerHubLikeRateLimit(t *testing.T) {
	hub := NewZooMember(t, "Docker Hub-like, limit 2", nil, DockerHubRateLimit(2), DockerHubManifests)
	SeedImage(t, hub.Reg, "library/alpine:3", 512, 1)
	u := hub.Front.URL.String() + "/v2/library/alpine/manifests/3"
	for i, want := range []struct {
		method    string
		status    int
		remaining string
	}{
		{http.MethodGet, 200, "1;w=21600"},
		{http.MethodHead, 200, ""},
		{http.MethodGet, 200, "0;w=21600"},
		{http.MethodHead, 200, ""},
		{http.MethodGet, 429, "0;w=21600"},
	} {
		req, _ := http.NewRequest(want.method, u, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("ratelimit-remaining"); resp.StatusCode != want.status || got != want.remaining {
			t.Errorf("request %d (%s): got %d, remaining %q; want %d, %q", i, want.method, resp.StatusCode, got, want.status, want.remaining)
		}
	}
}
