package proxy_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pullthrough/pullthrough/internal/testenv"
)

// TestRevalidationWithoutManifestHead: against registries that refuse
// manifest HEAD while GET works, a HEAD refusal with the GET failing too
// serves the cached tag stale, an expired tag that moved upstream is
// followed (not served stale forever), a HEAD 404 alone does not make the
// tag unknown, later revalidations skip the HEAD, and a tag the GET says is
// gone is gone.
func TestRevalidationWithoutManifestHead(t *testing.T) {
	for _, status := range []int{http.StatusMethodNotAllowed, http.StatusNotFound, http.StatusForbidden} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			member := testenv.NewZooMember(t, "no manifest HEAD", nil, testenv.NoManifestHead(status))
			mirror, clock := zooMirror(t, member, "")
			testenv.SeedImage(t, member.Reg, "org/app:1", 2<<10, 1)
			first := testenv.PullImage(t, mirror, "org/app:1")

			// HEAD refused and GET failing: the cached tag is served stale.
			member.Front.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method != http.MethodGet || testenv.Kind(r.URL.Path) != "manifest" {
					return false
				}
				http.Error(w, "boom", http.StatusInternalServerError)
				return true
			})
			clock.advance(zooTTL + time.Second)
			resp := do(t, http.MethodGet, mirror+"/v2/org/app/manifests/1", nil)
			if got := resp.Header.Get("Docker-Content-Digest"); resp.StatusCode != http.StatusOK || got != first.String() {
				t.Fatalf("HEAD refused, GET failing: got %d %s, want 200 %s (stale)", resp.StatusCode, got, first)
			}
			member.Front.Intercept(nil)

			moved := testenv.SeedImage(t, member.Reg, "org/app:1", 2<<10, 2)
			want, _ := moved.Digest()
			clock.advance(zooTTL + time.Second)
			resp = do(t, http.MethodGet, mirror+"/v2/org/app/manifests/1", nil)
			if got := resp.Header.Get("Docker-Content-Digest"); resp.StatusCode != http.StatusOK || got != want.String() {
				t.Fatalf("tag moved: got %d %s (cache %s), want 200 %s", resp.StatusCode, got, resp.Header.Get("X-Pullthrough-Cache"), want)
			}

			clock.advance(zooTTL + time.Second)
			member.Front.Reset()
			resp = do(t, http.MethodGet, mirror+"/v2/org/app/manifests/1", nil)
			if c := resp.Header.Get("X-Pullthrough-Cache"); resp.StatusCode != http.StatusOK || c != "revalidated" {
				t.Errorf("unchanged: got %d, cache %q; want 200, revalidated", resp.StatusCode, c)
			}
			if h, g := member.Front.Count(http.MethodHead, "manifest"), member.Front.Count(http.MethodGet, "manifest"); h != 0 || g != 1 {
				t.Errorf("unchanged: got %d HEAD and %d GET manifest requests upstream, want 0 and 1 (HEAD remembered as unusable)", h, g)
			}

			ref, _ := name.ParseReference(member.Reg.Host+"/org/app:1", name.Insecure)
			if err := remote.Delete(ref, remote.WithContext(context.Background())); err != nil {
				t.Fatal(err)
			}
			clock.advance(zooTTL + time.Second)
			resp = do(t, http.MethodGet, mirror+"/v2/org/app/manifests/1", nil)
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("tag deleted upstream: got %d, want 404", resp.StatusCode)
			}
			assertOCIError(t, resp, "MANIFEST_UNKNOWN")
		})
	}
}
