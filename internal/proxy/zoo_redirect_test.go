package proxy_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
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
	z := testenv.K8sRegistryLike(t)
	img := testenv.SeedImage(t, z.Reg, "pause:3.10", 8<<10, 2)
	testenv.SeedImage(t, z.Reg, "pause:3.9", 1<<10, 1)
	up := z.Front
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
	z := testenv.K8sRegistryLike(t)
	img := testenv.SeedImage(t, z.Reg, "pause:3.10", 8<<10, 1)
	up := z.Front
	m := mirrorFor(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways, LargeBlobPolicy: proxy.PolicyUpstream}, proxy.UpstreamConfig{Host: "registry.k8s.example"}, up)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	req, _ := http.NewRequest(http.MethodGet, m.URL+"/v2/registry.k8s.example/pause/blobs/"+ld.String(), nil)
	resp, err := testenv.NoRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body) // the whole stream: the fill is done with it
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("got %d to %q, want 200 from the mirror", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestCredentialsOnlyWhereConfigured: a registry that redirects to another
// host (as registry.k8s.io does) has that host authenticated on its own
// terms: configured credentials go to it and its realm only when it is an
// AuthHost; otherwise only an anonymous token from a realm on that very
// host is fetched, and a realm elsewhere is never contacted.
func TestCredentialsOnlyWhereConfigured(t *testing.T) {
	const user, pass = "robot", "redirect-secret-pw"
	for _, tc := range []struct {
		name       string
		realmUser  string // the redirect host's token endpoint demands these
		thirdRealm bool   // the redirect host's realm is on a third host
		authHost   bool   // the redirect host is configured in AuthHosts
		wantPull   bool
		wantCreds  bool // the realm received the configured credentials
	}{
		{"anonymous realm on the redirect host", "", false, false, true, false},
		{"redirect host wants credentials, not configured", user, false, false, false, false},
		{"redirect host wants credentials, configured", user, false, true, true, true},
		{"realm on a third host", "", true, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := testenv.InProcessRegistry(t)
			testenv.SeedImage(t, reg, "org/app:1", 1<<10, 1)
			target := testenv.NewUpstream(t, reg)
			third := testenv.NewUpstream(t, testenv.InProcessRegistry(t))
			realm := ""
			if tc.thirdRealm {
				realm = third.URL.String() + "/token"
			}
			target.RequireToken(realm, tc.realmUser, pass)
			front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, target.URL.String()+r.URL.Path, http.StatusTemporaryRedirect)
			}))
			t.Cleanup(front.Close)
			cfg := proxy.UpstreamConfig{Host: "redirecting.example", URL: front.URL, Username: user, Password: pass}
			if tc.authHost {
				cfg.AuthHosts = []string{target.URL.Host}
			}
			m := multiMirror(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, cfg)
			resp := do(t, http.MethodGet, m.URL+"/v2/redirecting.example/org/app/manifests/1", nil)
			if (resp.StatusCode == http.StatusOK) != tc.wantPull {
				t.Errorf("manifest: got %d, want success %v", resp.StatusCode, tc.wantPull)
			}
			sawCreds := false
			for _, a := range target.TokenLog() {
				sawCreds = sawCreds || a == "Basic "+basic(user, pass)
				if a != "" && a != "Basic "+basic(user, pass) {
					t.Errorf("the realm got Authorization %q", a)
				}
			}
			if sawCreds != tc.wantCreds {
				t.Errorf("the redirect host's realm got the credentials: %v, want %v", sawCreds, tc.wantCreds)
			}
			if n := third.Total(); n != 0 {
				t.Errorf("a realm on a third host got %d requests, want 0", n)
			}
		})
	}
}
