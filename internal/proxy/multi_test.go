package proxy_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// newTwoRegistries is a mirror of "docker.io" (default) and "ghcr.io"
// (token auth), each a real registry behind its own counting wrapper. It
// returns the registries' real addresses too.
func newTwoRegistries(t *testing.T, cfg proxy.Config, hubCfg, ghcrCfg proxy.UpstreamConfig) (*mirror, *testenv.Upstream, *testenv.Upstream, [2]string) {
	t.Helper()
	hubReg := testenv.InProcessRegistry(t)
	ghcrReg := testenv.InProcessRegistry(t)
	hub := testenv.NewUpstream(t, hubReg)
	ghcr := testenv.NewUpstream(t, ghcrReg)
	ghcr.RequireToken("", "robot", "ghcr-secret-pw")
	hubCfg.Host, hubCfg.URL = "docker.io", hub.URL.String()
	ghcrCfg.Host, ghcrCfg.URL = "ghcr.io", ghcr.URL.String()
	ghcrCfg.Username, ghcrCfg.Password = "robot", "ghcr-secret-pw"
	m := multiMirror(t, cfg, hubCfg, ghcrCfg)
	testenv.SeedImage(t, hubReg, "library/alpine:latest", 4<<10, 2)
	testenv.SeedImage(t, ghcrReg, "library/alpine:latest", 4<<10, 3) // same name, other content
	testenv.SeedImage(t, ghcrReg, "org/app:1.0", 4<<10, 1)
	hub.Reset()
	ghcr.Reset()
	return m, hub, ghcr, [2]string{hubReg.Host, ghcrReg.Host}
}

func TestRoutingByNamespaceAndPathPrefix(t *testing.T) {
	m, hub, ghcr, _ := newTwoRegistries(t, proxy.Config{ManifestTTL: time.Hour}, proxy.UpstreamConfig{}, proxy.UpstreamConfig{})

	// Path prefix: /v2/ghcr.io/org/app/...
	testenv.PullImage(t, m.URL, "ghcr.io/org/app:1.0")
	if hub.Total() != 0 || ghcr.Count(http.MethodGet, "blob") != 2 {
		t.Errorf("path prefix: got %d docker.io and %d ghcr.io blob requests, want 0 and 2", hub.Total(), ghcr.Count(http.MethodGet, "blob"))
	}

	// Same repository name on two registries: never one cache entry.
	hubDigest := testenv.PullImage(t, m.URL, "library/alpine:latest")
	ghcrDigest := testenv.PullImage(t, m.URL, "ghcr.io/library/alpine:latest")
	if hubDigest == ghcrDigest {
		t.Fatalf("docker.io and ghcr.io library/alpine:latest collided at %s", hubDigest)
	}

	// containerd's ?ns= picks the registry for an unprefixed name.
	ghcr.Reset()
	hub.Reset()
	resp := do(t, http.MethodGet, m.URL+"/v2/library/alpine/manifests/latest?ns=ghcr.io", nil)
	if got := resp.Header.Get("Docker-Content-Digest"); got != ghcrDigest.String() {
		t.Errorf("ns=ghcr.io: got %s, want %s", got, ghcrDigest)
	}
	if got := resp.Header.Get("OCI-Namespace"); got != "ghcr.io" {
		t.Errorf("got OCI-Namespace %q, want ghcr.io", got)
	}
	resp = do(t, http.MethodGet, m.URL+"/v2/library/alpine/manifests/latest?ns=docker.io", nil)
	if got := resp.Header.Get("Docker-Content-Digest"); got != hubDigest.String() {
		t.Errorf("ns=docker.io: got %s, want %s", got, hubDigest)
	}
	if hub.Total()+ghcr.Total() != 0 {
		t.Errorf("cached manifests went upstream: %d docker.io, %d ghcr.io requests", hub.Total(), ghcr.Total())
	}
	// Docker Hub's official images: alpine is library/alpine, one entry.
	resp = do(t, http.MethodGet, m.URL+"/v2/alpine/manifests/latest", nil)
	if got := resp.Header.Get("Docker-Content-Digest"); got != hubDigest.String() || hub.Total() != 0 {
		t.Errorf("alpine: got %s with %d upstream requests, want %s from cache", got, hub.Total(), hubDigest)
	}
}

func TestUnconfiguredRegistriesCauseNoOutboundRequest(t *testing.T) {
	m, hub, ghcr, hosts := newTwoRegistries(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{}, proxy.UpstreamConfig{})
	for _, path := range []string{
		"/v2/library/alpine/manifests/latest?ns=quay.io",
		"/v2/library/alpine/manifests/latest?ns=" + hosts[0], // the registry's real address is not a configured name
		"/v2/quay.io/org/app/manifests/1",
		"/v2/" + hosts[1] + "/org/app/manifests/1.0",
		"/v2/localhost/org/app/blobs/sha256:" + strings.Repeat("a", 64),
		"/v2/169.254.169.254/latest/tags/list",
	} {
		resp := do(t, http.MethodGet, m.URL+path, nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: got %d, want 404", path, resp.StatusCode)
		}
		assertOCIError(t, resp, "NAME_UNKNOWN")
	}
	if n := hub.Total() + ghcr.Total(); n != 0 {
		t.Errorf("unconfigured registries caused %d upstream requests, want 0", n)
	}
}

func TestRepositoryAllowAndDenyLists(t *testing.T) {
	m, hub, ghcr, _ := newTwoRegistries(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways},
		proxy.UpstreamConfig{Allow: []string{"library/*"}, Deny: []string{"library/forbidden"}},
		proxy.UpstreamConfig{Allow: []string{"org/**"}})
	for _, path := range []string{
		"/v2/someone/app/manifests/1",
		"/v2/library/forbidden/manifests/1",
		"/v2/ghcr.io/other/app/manifests/1",
		"/v2/library/alpine/manifests/latest?ns=ghcr.io",
	} {
		resp := do(t, http.MethodGet, m.URL+path, nil)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: got %d, want 403", path, resp.StatusCode)
		}
		assertOCIError(t, resp, "DENIED")
	}
	if n := hub.Total() + ghcr.Total(); n != 0 {
		t.Errorf("denied repositories caused %d upstream requests, want 0", n)
	}
	testenv.PullImage(t, m.URL, "library/alpine:latest")
	testenv.PullImage(t, m.URL, "ghcr.io/org/app:1.0")
}

func TestClientAccessControl(t *testing.T) {
	access := proxy.AccessConfig{Tokens: []string{"client-token-value"}, Users: map[string]string{"ci": "client-password-value"}}
	m, _, _, _ := newTwoRegistries(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways, Access: access}, proxy.UpstreamConfig{}, proxy.UpstreamConfig{})
	u := m.URL + "/v2/library/alpine/manifests/latest"
	for _, tc := range []struct {
		name   string
		auth   string
		status int
	}{
		{"none", "", 401},
		{"wrong token", "Bearer nope", 401},
		{"token", "Bearer client-token-value", 200},
		{"basic", "Basic " + basic("ci", "client-password-value"), 200},
		{"wrong password", "Basic " + basic("ci", "nope"), 401},
		{"unknown user", "Basic " + basic("root", "client-password-value"), 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.auth != "" {
				h.Set("Authorization", tc.auth)
			}
			resp := do(t, http.MethodGet, u, h)
			if resp.StatusCode != tc.status {
				t.Fatalf("got %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status == 401 {
				assertOCIError(t, resp, "UNAUTHORIZED")
				if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
					t.Errorf("got challenge %q, want Basic", resp.Header.Get("WWW-Authenticate"))
				}
			}
		})
	}
	// docker login checks /v2/ with the same credentials.
	if resp := do(t, http.MethodGet, m.URL+"/v2/", nil); resp.StatusCode != 401 {
		t.Errorf("/v2/ without credentials: got %d, want 401", resp.StatusCode)
	}
	testenv.PullImage(t, m.URL, "library/alpine:latest", remote.WithAuth(&bearer{"client-token-value"}))

	logs := m.Logs.String()
	for _, secret := range []string{"client-token-value", "client-password-value", "ghcr-secret-pw", basic("ci", "client-password-value")} {
		if strings.Contains(logs, secret) {
			t.Errorf("a credential appears in the logs: %q", secret)
		}
	}
}

func TestSourceAddressAllowlist(t *testing.T) {
	m, hub, _, _ := newTwoRegistries(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways, Access: proxy.AccessConfig{CIDRs: []string{"10.0.0.0/8"}}}, proxy.UpstreamConfig{}, proxy.UpstreamConfig{})
	resp := do(t, http.MethodGet, m.URL+"/v2/library/alpine/manifests/latest", nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("from 127.0.0.1 with only 10.0.0.0/8 allowed: got %d, want 403", resp.StatusCode)
	}
	assertOCIError(t, resp, "DENIED")
	if hub.Total() != 0 {
		t.Errorf("refused client caused %d upstream requests", hub.Total())
	}
	m2, _, _, _ := newTwoRegistries(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways, Access: proxy.AccessConfig{CIDRs: []string{"127.0.0.0/8"}}}, proxy.UpstreamConfig{}, proxy.UpstreamConfig{})
	testenv.PullImage(t, m2.URL, "library/alpine:latest")
}

func TestBlobHeadFallsBackToRangedGet(t *testing.T) {
	m, reg := newMirror(t, proxy.Config{}, proxy.UpstreamConfig{})
	img := testenv.SeedImage(t, reg, "org/app:1", 32<<10, 1)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	size, _ := layers[0].Size()
	m.Up.SetFault(testenv.FaultNoHead, "blob")
	resp := do(t, http.MethodHead, m.URL+"/v2/org/app/blobs/"+ld.String(), nil)
	if resp.StatusCode != 200 || resp.ContentLength != size {
		t.Errorf("got %d with length %d, want 200 with %d", resp.StatusCode, resp.ContentLength, size)
	}
}

func TestReferrers(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []registry.Option
	}{
		{"referrers API", []registry.Option{registry.WithReferrersSupport(true)}},
		{"tag schema fallback", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := testenv.InProcessRegistry(t, tc.opts...)
			up := testenv.NewUpstream(t, reg)
			m := mirrorFor(t, proxy.Config{ManifestTTL: time.Hour}, proxy.UpstreamConfig{}, up)
			img := testenv.SeedImage(t, reg, "org/app:1", 1<<10, 1)
			subject := describe(t, img)
			for _, at := range []string{"application/vnd.example.sig", "application/vnd.example.sbom"} {
				art, _ := random.Image(64, 1)
				art = mutate.MediaType(art, "application/vnd.oci.image.manifest.v1+json")
				art = mutate.ConfigMediaType(art, typesMediaType(at))
				art = mutate.Subject(art, subject).(v1.Image)
				d, _ := art.Digest()
				ref, _ := name.ParseReference(reg.Host+"/org/app@"+d.String(), name.Insecure)
				if err := remote.Write(ref, art); err != nil {
					t.Fatal(err)
				}
			}
			// A client resolves the subject first (cosign, oras, notation
			// do); only the referrers of a subject the mirror holds are
			// kept for when the upstream is down.
			testenv.PullImage(t, m.URL, "org/app:1")
			u := m.URL + "/v2/org/app/referrers/" + subject.Digest.String()
			all := referrersOf(t, do(t, http.MethodGet, u, nil))
			if len(all) != 2 {
				t.Fatalf("got %d referrers, want 2", len(all))
			}
			up.SetFault(testenv.FaultDown, "")
			resp := do(t, http.MethodGet, u+"?artifactType=application/vnd.example.sbom", nil)
			sboms := referrersOf(t, resp)
			if len(sboms) != 1 || sboms[0] != "application/vnd.example.sbom" || resp.Header.Get("OCI-Filters-Applied") != "artifactType" {
				t.Errorf("filtered from cache: got %v (%q)", sboms, resp.Header.Get("OCI-Filters-Applied"))
			}
		})
	}
}

func referrersOf(t *testing.T, resp response) []string {
	t.Helper()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/vnd.oci.image.index.v1+json" {
		t.Fatalf("got %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), resp.body)
	}
	var idx struct {
		Manifests []struct{ ArtifactType string }
	}
	if err := json.Unmarshal(resp.body, &idx); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range idx.Manifests {
		out = append(out, m.ArtifactType)
	}
	return out
}
