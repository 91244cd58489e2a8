package proxy_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/store"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// fakeClock is the proxy's clock, moved forward by tests to expire tags.
type fakeClock struct{ offset atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *fakeClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// zooTTL is the tag TTL of zoo mirrors; tests expire tags with the clock.
const zooTTL = 10 * time.Minute

// zooMirror serves a proxy in front of one zoo member, named zoo.test,
// over a filesystem store in dir ("" for a fresh one), with a fake clock.
func zooMirror(t *testing.T, member *testenv.ZooMember, dir string) (string, *fakeClock) {
	t.Helper()
	return zooMirrorAs(t, "zoo.test", member, dir)
}

// zooMirrorAs is zooMirror with the member's registry named host.
func zooMirrorAs(t *testing.T, host string, member *testenv.ZooMember, dir string) (string, *fakeClock) {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	st, err := store.NewFilesystem(dir)
	if err != nil {
		t.Fatal(err)
	}
	up, err := proxy.NewUpstream(proxy.UpstreamConfig{Host: host, URL: member.Front.URL.String(), AuthHosts: member.AuthHosts()})
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(proxy.Config{ManifestTTL: zooTTL}, st, []*proxy.Upstream{up}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{}
	p.SetClock(clock.now)
	t.Cleanup(func() { waitFills(t, p) })
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return srv.URL, clock
}

// seedDockerList pushes a Docker manifest list of a linux/arm64 and a
// linux/amd64 image (in that order, so the default platform is not simply
// the first entry) and returns the list's digest and the amd64 image's.
func seedDockerList(t *testing.T, reg *url.URL, repoTag string) (list, amd64 v1.Hash) {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.DockerManifestList)
	var child v1.Hash
	for _, arch := range []string{"arm64", "amd64"} {
		img, err := random.Image(2<<10, 1)
		if err != nil {
			t.Fatal(err)
		}
		if arch == "amd64" {
			child, _ = img.Digest()
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	ref, err := name.ParseReference(reg.Host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatalf("seed %s: %v", repoTag, err)
	}
	d, _ := idx.Digest()
	return d, child
}

// TestZooPull pulls through the mirror from every zoo member, by the
// member's host prefix: a blob HEAD on a cold cache (some members refuse
// blob HEAD), a cold pull of a Docker manifest list, a warm pull that makes
// no upstream request, a pull after the tag moved upstream, one after the
// TTL with nothing changed (costing the member's revalidation requests),
// and one while the upstream is down (served stale). Members with tokens
// issue them, and none receives credentials it did not issue.
func TestZooPull(t *testing.T) {
	for _, tc := range []struct {
		start      func(testing.TB) *testenv.ZooMember
		host, repo string
		// manifest requests one revalidation of an unchanged tag costs
		// upstream, counting those a token challenge refused
		revalidateHeads, revalidateGets int
		tokens                          bool // the member hands out anonymous tokens
	}{
		{testenv.DockerHubLike, "hub.example", "library/app", 1, 0, true},
		{testenv.ArtifactoryLike, "artifactory.example", "org/app", 0, 1, false},
		{testenv.QuayLike, "quay.example", "org/app", 1, 0, false},
		{testenv.GHCRLike, "ghcr.example", "org/app", 1, 0, true},
		{testenv.ECRPublicLike, "ecr.example", "docker/library/alpine", 1, 0, true},
		{testenv.K8sRegistryLike, "registry.k8s.example", "pause", 1, 0, true},
	} {
		member := tc.start(t)
		t.Run(member.Name, func(t *testing.T) {
			mirror, clock := zooMirrorAs(t, tc.host, member, "")
			ref := tc.host + "/" + tc.repo + ":1"
			_, want := seedDockerList(t, member.Reg, tc.repo+":1")

			ld, size := firstLayer(t, member.Reg, tc.repo, want)
			resp := do(t, http.MethodHead, mirror+"/v2/"+tc.host+"/"+tc.repo+"/blobs/"+ld.String(), nil)
			if resp.StatusCode != http.StatusOK || resp.ContentLength != size {
				t.Errorf("cold blob HEAD: got %d with length %d, want 200 with %d", resp.StatusCode, resp.ContentLength, size)
			}
			if got := testenv.PullImage(t, mirror, ref); got != want {
				t.Fatalf("cold: got %s, want the linux/amd64 image %s", got, want)
			}
			// A token realm on its own host ran the token flow, and a
			// blob CDN on its own host served the blobs.
			if member.Realm != nil && (member.RealmRequests() == 0 || member.Issued() == 0) {
				t.Errorf("cold: the realm host got %d requests and issued %d tokens, want some", member.RealmRequests(), member.Issued())
			}
			if member.Name == "Docker Hub-like" && member.OtherRequests() == 0 {
				t.Errorf("cold: the CDN host got no request, want the blobs fetched from it")
			}

			member.Front.Reset()
			issued, realmHits, otherHits := member.Issued(), member.RealmRequests(), member.OtherRequests()
			if got := testenv.PullImage(t, mirror, ref); got != want {
				t.Errorf("warm: got %s, want %s", got, want)
			}
			if n, tokens := member.Front.Total(), member.Issued()-issued; n != 0 || tokens != 0 {
				t.Errorf("warm: got %d upstream requests and %d new tokens, want 0 and 0", n, tokens)
			}
			if r, o := member.RealmRequests()-realmHits, member.OtherRequests()-otherHits; r != 0 || o != 0 {
				t.Errorf("warm: got %d requests to the realm host and %d to the other host, want 0 and 0", r, o)
			}

			_, moved := seedDockerList(t, member.Reg, tc.repo+":1")
			clock.advance(zooTTL + time.Second)
			if got := testenv.PullImage(t, mirror, ref); got != moved {
				t.Errorf("tag moved: got %s, want %s", got, moved)
			}

			clock.advance(zooTTL + time.Second)
			member.Front.Reset()
			if got := testenv.PullImage(t, mirror, ref); got != moved {
				t.Errorf("unchanged after TTL: got %s, want %s", got, moved)
			}
			if h, g := member.Front.Count(http.MethodHead, "manifest"), member.Front.Count(http.MethodGet, "manifest"); h != tc.revalidateHeads || g != tc.revalidateGets {
				t.Errorf("unchanged after TTL: got %d HEAD and %d GET manifest requests upstream, want %d and %d", h, g, tc.revalidateHeads, tc.revalidateGets)
			}

			clock.advance(zooTTL + time.Second)
			member.Front.SetFault(testenv.FaultDown, "")
			if got := testenv.PullImage(t, mirror, ref); got != moved {
				t.Errorf("upstream down: got %s, want %s (stale)", got, moved)
			}
			if got := member.Issued() > 0; got != tc.tokens {
				t.Errorf("the member issued %d tokens, want any: %v", member.Issued(), tc.tokens)
			}
			// ForeignAuth includes any Authorization header a signed-URL
			// CDN received: a signed URL is its own authorization.
			if foreign := member.ForeignAuth(); len(foreign) != 0 {
				t.Errorf("the member received credentials it did not issue: %q", foreign)
			}
		})
	}
}

// firstLayer is the digest and size of the first layer of image dgst in
// repo, read from the registry itself.
func firstLayer(t *testing.T, reg *url.URL, repo string, dgst v1.Hash) (v1.Hash, int64) {
	t.Helper()
	ref, err := name.ParseReference(reg.Host+"/"+repo+"@"+dgst.String(), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) == 0 {
		t.Fatalf("layers of %s: %d, %v", ref, len(layers), err)
	}
	d, _ := layers[0].Digest()
	size, _ := layers[0].Size()
	return d, size
}
