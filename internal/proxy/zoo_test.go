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

// zooMirror serves a proxy in front of one zoo member over a filesystem
// store in dir ("" for a fresh one), with a fake clock.
func zooMirror(t *testing.T, member *testenv.ZooMember, dir string) (string, *fakeClock) {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	st, err := store.NewFilesystem(dir)
	if err != nil {
		t.Fatal(err)
	}
	up, err := proxy.NewUpstream(proxy.UpstreamConfig{Host: "zoo.test", URL: member.Front.URL.String()})
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(proxy.Config{ManifestTTL: zooTTL}, st, []*proxy.Upstream{up}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{}
	p.SetClock(clock.now)
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

// TestZooPullManifestQuirks pulls through the mirror from each zoo member: cold, warm,
// after the tag moved, when nothing changed after the TTL, and with the
// upstream down.
func TestZooPullManifestQuirks(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(testing.TB) *testenv.ZooMember
		// manifest requests one revalidation of an unchanged tag costs
		revalidateHeads, revalidateGets int
	}{
		{"Docker Hub-like", testenv.DockerHubLike, 1, 0},
		{"Artifactory-like", testenv.ArtifactoryLike, 0, 1},
		{"quay-like", func(t testing.TB) *testenv.ZooMember { m, _ := testenv.QuayLike(t); return m }, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			member := tc.start(t)
			mirror, clock := zooMirror(t, member, "")
			_, want := seedDockerList(t, member.Reg, "org/app:1")

			if got := testenv.PullImage(t, mirror, "org/app:1"); got != want {
				t.Fatalf("cold: got %s, want the linux/amd64 image %s", got, want)
			}
			member.Front.Reset()
			if got := testenv.PullImage(t, mirror, "org/app:1"); got != want {
				t.Errorf("warm: got %s, want %s", got, want)
			}
			if n := member.Front.Total(); n != 0 {
				t.Errorf("warm: got %d upstream requests, want 0", n)
			}

			_, moved := seedDockerList(t, member.Reg, "org/app:1")
			clock.advance(zooTTL + time.Second)
			if got := testenv.PullImage(t, mirror, "org/app:1"); got != moved {
				t.Errorf("tag moved: got %s, want %s", got, moved)
			}

			clock.advance(zooTTL + time.Second)
			member.Front.Reset()
			if got := testenv.PullImage(t, mirror, "org/app:1"); got != moved {
				t.Errorf("unchanged after TTL: got %s, want %s", got, moved)
			}
			if h, g := member.Front.Count(http.MethodHead, "manifest"), member.Front.Count(http.MethodGet, "manifest"); h != tc.revalidateHeads || g != tc.revalidateGets {
				t.Errorf("unchanged after TTL: got %d HEAD and %d GET manifest requests upstream, want %d and %d", h, g, tc.revalidateHeads, tc.revalidateGets)
			}

			clock.advance(zooTTL + time.Second)
			member.Front.SetFault(testenv.FaultDown, "")
			if got := testenv.PullImage(t, mirror, "org/app:1"); got != moved {
				t.Errorf("upstream down: got %s, want %s (stale)", got, moved)
			}
		})
	}
}
