package proxy_test

import (
	"net/http"
	"testing"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// TestZooPullRoutingQuirks pulls through the mirror from each zoo member: a blob HEAD
// on a cold cache (some members refuse blob HEAD), a cold pull, a warm pull
// that makes no blob request upstream, a pull after the tag moved upstream,
// and a pull while the upstream is down (served from cache).
func TestZooPullRoutingQuirks(t *testing.T) {
	for _, tc := range []struct {
		name, host, repo string
		start            func(testing.TB) *testenv.StandIn
		tokens           bool // the member hands out anonymous tokens
	}{
		{"Quay-like paging", "quay.example", "org/app", testenv.ZooQuayPaging, false},
		{"registry.k8s.io-like redirect", "registry.k8s.example", "pause", testenv.ZooK8sRegistry, true},
		{"GHCR-like", "ghcr.example", "org/app", testenv.ZooGHCR, true},
		{"ECR Public-like", "ecr.example", "docker/library/alpine", testenv.ZooECRPublic, true},
		{"Artifactory-like referrers", "artifactory.example", "org/app", testenv.ZooArtifactoryReferrers, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			z := tc.start(t)
			img := testenv.SeedImage(t, z.Backing, tc.repo+":1", 16<<10, 2)
			up := testenv.NewUpstream(t, z.Front)
			// TTL 0: every manifest request revalidates upstream.
			m := mirrorFor(t, proxy.Config{}, proxy.UpstreamConfig{Host: tc.host}, up)
			ref := tc.host + "/" + tc.repo + ":1"

			layers, _ := img.Layers()
			ld, _ := layers[0].Digest()
			size, _ := layers[0].Size()
			resp := do(t, http.MethodHead, m.URL+"/v2/"+tc.host+"/"+tc.repo+"/blobs/"+ld.String(), nil)
			if resp.StatusCode != 200 || resp.ContentLength != size {
				t.Errorf("cold blob HEAD: got %d with length %d, want 200 with %d", resp.StatusCode, resp.ContentLength, size)
			}

			want, _ := img.Digest()
			if got := testenv.PullImage(t, m.URL, ref); got != want {
				t.Fatalf("cold: got %s, want %s", got, want)
			}
			up.Reset()
			if got := testenv.PullImage(t, m.URL, ref); got != want {
				t.Errorf("warm: got %s, want %s", got, want)
			}
			if n := up.Count("", "blob"); n != 0 {
				t.Errorf("warm: got %d upstream blob requests, want 0", n)
			}

			moved := testenv.SeedImage(t, z.Backing, tc.repo+":1", 16<<10, 1)
			wantMoved, _ := moved.Digest()
			if got := testenv.PullImage(t, m.URL, ref); got != wantMoved {
				t.Errorf("tag moved: got %s, want %s", got, wantMoved)
			}

			up.SetFault(testenv.FaultDown, "")
			if got := testenv.PullImage(t, m.URL, ref); got != wantMoved {
				t.Errorf("upstream down: got %s, want %s from cache", got, wantMoved)
			}
			if got := z.Issued() > 0; got != tc.tokens {
				t.Errorf("the member issued %d tokens, want any: %v", z.Issued(), tc.tokens)
			}
			if foreign := z.ForeignAuth(); len(foreign) != 0 {
				t.Errorf("the member received credentials it did not issue: %q", foreign)
			}
		})
	}
}
