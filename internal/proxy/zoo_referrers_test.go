package proxy_test

import (
	"cmp"
	"net/http"
	"net/url"
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

// TestReferrersWithoutTheAPI: an upstream whose referrers endpoint answers
// anything but an image index (Artifactory's 406, a 400, a 200 HTML page,
// a JSON document that is no index) gets the tag-schema fallback, as the
// OCI distribution spec's "Listing Referrers" fallback and go-containerregistry
// do; auth and server failures do not.
func TestReferrersWithoutTheAPI(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(w http.ResponseWriter)
		want   int // referrers, or -1 for an error status
	}{
		{"406 like Artifactory", nil, 2},
		{"400", func(w http.ResponseWriter) { http.Error(w, "bad request", http.StatusBadRequest) }, 2},
		{"200 HTML", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html>login</html>"))
		}, 2},
		{"200 JSON not an index", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"repositories":[]}`))
		}, 2},
		{"200 index-like JSON with a wrong-typed mediaType", func(w http.ResponseWriter) {
			// The mirror serves the answer through its own index type, which
			// cannot read it: not an index, or every later request fails.
			w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
			w.Write([]byte(`{"schemaVersion":2,"mediaType":5,"manifests":[]}`))
		}, 2},
		{"500", func(w http.ResponseWriter) { http.Error(w, "boom", http.StatusInternalServerError) }, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			z := testenv.ArtifactoryLike(t)
			up := z.Front
			if tc.answer != nil {
				up.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
					if testenv.Kind(r.URL.Path) != "referrers" {
						return false
					}
					tc.answer(w)
					return true
				})
			}
			m := mirrorFor(t, proxy.Config{ManifestTTL: time.Hour}, proxy.UpstreamConfig{}, up)
			subject := seedReferrers(t, z.Reg, "org/app:1", 2)
			resp := do(t, http.MethodGet, m.URL+"/v2/org/app/referrers/"+subject.String(), nil)
			if tc.want < 0 {
				if resp.StatusCode < 500 {
					t.Fatalf("got %d, want a 5xx", resp.StatusCode)
				}
				return
			}
			if got := referrersOf(t, resp); len(got) != tc.want {
				t.Errorf("got %d referrers, want %d", len(got), tc.want)
			}
			if n := up.Count(http.MethodGet, "manifest"); n != 1 {
				t.Errorf("got %d tag-schema manifest GETs, want 1", n)
			}
		})
	}
}

// seedReferrers pushes an image and n artifacts whose subject it is
// straight to a registry without the referrers API (go-containerregistry
// then maintains the <alg>-<hex> fallback tag) and returns the subject.
func seedReferrers(t *testing.T, reg *url.URL, ref string, n int) v1.Hash {
	t.Helper()
	img := testenv.SeedImage(t, reg, ref, 1<<10, 1)
	subject := describe(t, img)
	for i := 0; i < n; i++ {
		art, _ := random.Image(64, 1)
		art = mutate.MediaType(art, "application/vnd.oci.image.manifest.v1+json")
		art = mutate.ConfigMediaType(art, typesMediaType("application/vnd.example.sig"))
		art = mutate.Subject(art, subject).(v1.Image)
		d, _ := art.Digest()
		repo, _, _ := strings.Cut(ref, ":")
		r, err := name.ParseReference(reg.Host+"/"+repo+"@"+d.String(), name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(r, art); err != nil {
			t.Fatal(err)
		}
	}
	return subject.Digest
}

// TestReferrersAcrossPages: an upstream that pages its referrers list with
// rel="next" Links (testenv.PagedReferrers: the spec's "Listing
// Referrers" makes the Link a MUST when paging; go-containerregistry PR
// #2446) is read to the end, so a client sees every referrer, and an
// artifactType filter applies to the whole list: here the only SBOMs are
// on the last of three pages. The whole list is cached: later requests,
// filtered or not, ask the upstream nothing.
func TestReferrersAcrossPages(t *testing.T) {
	const sig, sbom = "application/vnd.cncf.notary.signature", "application/vnd.example.sbom"
	z := testenv.NewZooMember(t, "paged referrers", testenv.InProcessRegistry(t, registry.WithReferrersSupport(true)), testenv.PagedReferrers(2))
	subject := testenv.SeedImage(t, z.Reg, "org/app:1", 1<<10, 1)
	for _, typ := range []string{sig, sig, sig, sig, sbom, sbom} { // ordered by type: the SBOMs come last
		testenv.SeedArtifact(t, z.Reg, "org/app", subject, typ)
	}
	d, _ := subject.Digest()
	m := mirrorFor(t, proxy.Config{ManifestTTL: time.Hour}, proxy.UpstreamConfig{}, z.Front)
	// Referrers are kept only for a subject the mirror holds: pull it
	// first, as a client verifying a signature does.
	do(t, http.MethodGet, m.URL+"/v2/org/app/manifests/"+d.String(), nil)
	for _, tc := range []struct {
		artifactType string
		want         []string
	}{
		{sbom, []string{sbom, sbom}},
		{"", []string{sig, sig, sig, sig, sbom, sbom}},
		{sig, []string{sig, sig, sig, sig}},
	} {
		t.Run(cmp.Or(tc.artifactType, "unfiltered"), func(t *testing.T) {
			u := m.URL + "/v2/org/app/referrers/" + d.String()
			if tc.artifactType != "" {
				u += "?artifactType=" + url.QueryEscape(tc.artifactType)
			}
			resp := do(t, http.MethodGet, u, nil)
			if got := referrersOf(t, resp); strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("got referrers %v, want %v", got, tc.want)
			}
			if l := resp.Header.Get("Link"); l != "" {
				t.Errorf("got Link %q, want none (the whole list in one answer)", l)
			}
		})
	}
	if n := z.Front.Count(http.MethodGet, "referrers"); n != 3 {
		t.Errorf("got %d upstream referrers GETs, want 3 (three pages, once)", n)
	}
}
