package testenv

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// PagedReferrers answers the referrers API in pages of size descriptors,
// each but the last with a relative `Link: <...?last=<digest>&n=<size>>;
// rel="next"`, as the OCI distribution spec's "Listing Referrers" allows
// (a registry MUST send the Link when it pages; go-containerregistry PR
// #2446 made its client follow it). The registry behind it must have the
// referrers API (registry.WithReferrersSupport). Descriptors come in a
// stable order, by artifactType and then digest, so a test can place
// entries on a page; an artifactType query is ignored, as by registries
// that do not filter (no OCI-Filters-Applied).
func PagedReferrers(size int) Quirk {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || Kind(r.URL.Path) != "referrers" {
				next.ServeHTTP(w, r)
				return
			}
			whole := r.Clone(r.Context())
			whole.URL.RawQuery, whole.RequestURI = "", ""
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, whole)
			var idx struct {
				SchemaVersion int               `json:"schemaVersion"`
				MediaType     string            `json:"mediaType"`
				Manifests     []json.RawMessage `json:"manifests"`
			}
			if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &idx) != nil {
				w.WriteHeader(rec.Code)
				w.Write(rec.Body.Bytes())
				return
			}
			type entry struct {
				raw                  json.RawMessage
				artifactType, digest string
			}
			var all []entry
			for _, m := range idx.Manifests {
				var d struct{ ArtifactType, Digest string }
				json.Unmarshal(m, &d)
				all = append(all, entry{m, d.ArtifactType, d.Digest})
			}
			sort.Slice(all, func(i, j int) bool {
				if all[i].artifactType != all[j].artifactType {
					return all[i].artifactType < all[j].artifactType
				}
				return all[i].digest < all[j].digest
			})
			start := 0
			if last := r.URL.Query().Get("last"); last != "" {
				for i, e := range all {
					if e.digest == last {
						start = i + 1
					}
				}
			}
			end := min(start+size, len(all))
			idx.Manifests = []json.RawMessage{}
			for _, e := range all[start:end] {
				idx.Manifests = append(idx.Manifests, e.raw)
			}
			if end < len(all) {
				q := url.Values{"last": {all[end-1].digest}, "n": {strconv.Itoa(size)}}
				w.Header().Set("Link", "<"+strings.TrimSuffix(r.URL.Path, "/")+"?"+q.Encode()+`>; rel="next"`)
			}
			body, _ := json.Marshal(idx)
			w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(http.StatusOK)
			w.Write(body)
		})
	}
}

// SeedArtifact pushes to reg's repository, by digest, a small OCI
// artifact of artifactType (its config media type, which registries
// report as the referrer's artifactType) whose subject is subject, and
// returns the artifact's digest.
func SeedArtifact(t testing.TB, reg *url.URL, repo string, subject v1.Image, artifactType string) v1.Hash {
	t.Helper()
	desc, err := partial.Descriptor(subject)
	if err != nil {
		t.Fatal(err)
	}
	art, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	art = mutate.MediaType(art, types.OCIManifestSchema1)
	art = mutate.ConfigMediaType(art, types.MediaType(artifactType))
	art = mutate.Subject(art, *desc).(v1.Image)
	d, err := art.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(reg.Host+"/"+repo+"@"+d.String(), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, art); err != nil {
		t.Fatalf("seed artifact for %s: %v", repo, err)
	}
	return d
}
