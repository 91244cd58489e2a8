package proxy_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/testenv"
)

// Accept lists of real clients and of narrow ones.
const (
	acceptDockerV2 = "application/vnd.docker.distribution.manifest.v2+json"
	acceptOCIOnly  = "application/vnd.oci.image.manifest.v1+json"
	acceptFull     = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*" // containerd's
)

// answer is what a client notices of a manifest answer.
type answer struct {
	Status              int
	Digest, ContentType string
}

func (a answer) String() string {
	return fmt.Sprintf("%d %s %s", a.Status, a.Digest, a.ContentType)
}

func ask(t *testing.T, method, url, accept string) answer {
	t.Helper()
	return askAs(t, method, url, accept, "")
}

// askAs is ask with an Authorization header (none if auth is "").
func askAs(t *testing.T, method, url, accept, auth string) answer {
	t.Helper()
	h := http.Header{"Accept": {accept}}
	if auth != "" {
		h.Set("Authorization", auth)
	}
	resp := do(t, method, url, h)
	a := answer{Status: resp.StatusCode}
	if resp.StatusCode == http.StatusOK {
		a.Digest, a.ContentType = resp.Header.Get("Docker-Content-Digest"), resp.Header.Get("Content-Type")
	}
	return a
}

// TestNarrowAcceptNeverChangesTheTag: a client accepting only Docker
// schema 2 manifests gets, through the mirror, what the upstream gives it
// (the linux/amd64 image of a Docker list, 404 for an OCI index), and no
// order of requests — cold, warm, stale, after revalidation — changes what
// any other client gets for the tag.
func TestNarrowAcceptNeverChangesTheTag(t *testing.T) {
	accepts := []string{acceptDockerV2, acceptOCIOnly, acceptFull}
	for _, first := range []string{http.MethodGet, http.MethodHead} {
		t.Run("first request narrow "+first, func(t *testing.T) {
			hub := testenv.DockerHubLike(t)
			mirror, clock := zooMirror(t, hub, "")
			seedDockerList(t, hub.Reg, "org/multi:v1")
			testenv.SeedIndex(t, hub.Reg, "org/oci:v1", 2<<10, 1, 2)

			// What the upstream answers each client, asked directly.
			upstream := func() map[string]answer {
				want := map[string]answer{}
				for _, repo := range []string{"org/multi", "org/oci"} {
					for _, a := range accepts {
						want[repo+" "+a] = askAs(t, http.MethodGet, hub.Front.URL.String()+"/v2/"+repo+"/manifests/v1", a, hub.PullToken(t, repo))
					}
				}
				return want
			}
			check := func(step string, want map[string]answer) {
				t.Helper()
				for _, repo := range []string{"org/multi", "org/oci"} {
					for _, a := range accepts {
						got := ask(t, http.MethodGet, mirror+"/v2/"+repo+"/manifests/v1", a)
						if w := want[repo+" "+a]; got != w {
							t.Errorf("%s: %s with Accept %.40q: got %v, want %v (the upstream's answer)", step, repo, a, got, w)
						}
					}
				}
			}
			want := upstream()
			if w := want["org/multi "+acceptDockerV2]; w.Status != http.StatusOK || w.Digest == want["org/multi "+acceptFull].Digest {
				t.Fatalf("Docker Hub-like upstream did not rewrite the list for a narrow client: %v", w)
			}

			for _, repo := range []string{"org/multi", "org/oci"} {
				ask(t, first, mirror+"/v2/"+repo+"/manifests/v1", acceptDockerV2) // cold, narrow
			}
			check("cold after a narrow request", want)

			hub.Front.SetFault(testenv.FaultDown, "")
			clock.advance(zooTTL + time.Second)
			check("stale, upstream down", want)
			hub.Front.SetFault(testenv.FaultNone, "")

			seedDockerList(t, hub.Reg, "org/multi:v1")
			testenv.SeedIndex(t, hub.Reg, "org/oci:v1", 2<<10, 1, 2)
			moved := upstream()
			clock.advance(zooTTL + time.Second)
			for _, repo := range []string{"org/multi", "org/oci"} {
				ask(t, first, mirror+"/v2/"+repo+"/manifests/v1", acceptDockerV2) // revalidates, narrow
			}
			check("after revalidation by a narrow request", moved)
		})
	}
}

// TestConcurrentColdTagRequestsShareOneUpstreamGet: clients of every kind
// asking for one cold tag at once cost one upstream GET of the tag (and one
// of the image a narrow client is sent).
func TestConcurrentColdTagRequestsShareOneUpstreamGet(t *testing.T) {
	hub := testenv.DockerHubLike(t)
	mirror, _ := zooMirror(t, hub, "")
	list, child := seedDockerList(t, hub.Reg, "org/app:1")
	var mu sync.Mutex
	gets := map[string]int{}
	hub.Front.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		// Only GETs with a token reach the registry (and count as pulls);
		// the token challenge refuses the others.
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/") && r.Header.Get("Authorization") != "" {
			mu.Lock()
			gets[r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]]++
			mu.Unlock()
			time.Sleep(200 * time.Millisecond) // a slow upstream widens the race
		}
		return false
	})

	var wg sync.WaitGroup
	got := make([]answer, 12)
	for i := range got {
		accept := acceptFull
		if i%2 == 1 {
			accept = acceptDockerV2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = ask(t, http.MethodGet, mirror+"/v2/org/app/manifests/1", accept)
		}()
	}
	wg.Wait()
	for i, a := range got {
		want := list.String()
		if i%2 == 1 {
			want = child.String()
		}
		if a.Status != http.StatusOK || a.Digest != want {
			t.Errorf("request %d: got %v, want 200 %s", i, a, want)
		}
	}
	if gets["1"] != 1 || gets[child.String()] != 1 || len(gets) != 2 {
		t.Errorf("got upstream manifest GETs %v, want one of the tag and one of %s", gets, child)
	}
}
