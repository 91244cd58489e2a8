package upstream_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/opencontainers/go-digest"

	"github.com/pullthrough/pullthrough/internal/oci"
	"github.com/pullthrough/pullthrough/internal/testenv"
	"github.com/pullthrough/pullthrough/internal/upstream"
)

const sig = "application/vnd.cncf.notary.signature"

// TestReferrersPages: a referrers list the upstream pages with rel="next"
// Links (testenv.PagedReferrers, the spec's "Listing Referrers") is read
// to its end and returned whole, one GET per page.
func TestReferrersPages(t *testing.T) {
	for _, tc := range []struct {
		artifacts, pageSize, wantGets int
	}{
		{5, 2, 3},
		{4, 2, 2},
		{3, 10, 1},
		{0, 2, 1},
	} {
		t.Run(fmt.Sprintf("%d in pages of %d", tc.artifacts, tc.pageSize), func(t *testing.T) {
			z := testenv.NewZooMember(t, "paged referrers", testenv.InProcessRegistry(t, registry.WithReferrersSupport(true)), testenv.PagedReferrers(tc.pageSize))
			subject := testenv.SeedImage(t, z.Reg, "org/app:1", 256, 1)
			want := map[string]bool{}
			for range tc.artifacts {
				want[testenv.SeedArtifact(t, z.Reg, "org/app", subject, sig).String()] = true
			}
			d, _ := subject.Digest()
			c, _ := newClient(t, z.Front.URL.String(), upstream.Timeouts{})
			body, err := c.Referrers(bounded(t), "org/app", digest.Digest(d.String()), 4<<20)
			if err != nil {
				t.Fatal(err)
			}
			var idx oci.ReferrersIndex
			if err := json.Unmarshal(body, &idx); err != nil {
				t.Fatal(err)
			}
			got := map[string]bool{}
			for _, m := range idx.Manifests {
				var desc struct{ Digest string }
				json.Unmarshal(m, &desc)
				got[desc.Digest] = true
			}
			if len(idx.Manifests) != len(want) || len(got) != len(want) {
				t.Errorf("got %d referrers (%d distinct), want %d", len(idx.Manifests), len(got), len(want))
			}
			for dg := range want {
				if !got[dg] {
					t.Errorf("referrer %s missing", dg)
				}
			}
			if n := z.Front.Count(http.MethodGet, "referrers"); n != tc.wantGets {
				t.Errorf("got %d referrers GETs, want %d", n, tc.wantGets)
			}
		})
	}
}

// TestReferrersPagesFailClosed: a paged list that cannot be read whole is
// an error, never the pages read so far (a part of the list would hide
// signatures): a list without end, a link back to a page read, a later
// page that is missing, fails or is no index, and pages larger than the
// size bound in all. Each stand-in scripts its pages: page k links page
// k+1 (or what the case says) and holds one descriptor.
func TestReferrersPagesFailClosed(t *testing.T) {
	for _, tc := range []struct {
		name     string
		page     func(w http.ResponseWriter, k int) // k: 1 for the first page
		maxSize  int64
		wantGets int
		want     error // ErrUnusable, or nil for a *StatusError
	}{
		{"no end", func(w http.ResponseWriter, k int) { link(w, k+1); index(w, k) }, 1 << 20, upstream.MaxReferrerPages, upstream.ErrUnusable},
		{"links back", func(w http.ResponseWriter, k int) { link(w, 2); index(w, k) }, 1 << 20, 2, upstream.ErrUnusable},
		{"page 2 missing", pageTwo(func(w http.ResponseWriter) {
			http.Error(w, `{"errors":[{"code":"NAME_UNKNOWN"}]}`, http.StatusNotFound)
		}), 1 << 20, 2, upstream.ErrUnusable},
		{"page 2 is HTML", pageTwo(func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html>login</html>"))
		}), 1 << 20, 2, upstream.ErrUnusable},
		{"page 2 fails", pageTwo(func(w http.ResponseWriter) { http.Error(w, "boom", http.StatusInternalServerError) }), 1 << 20, 2, nil},
		{"larger than the bound in all", func(w http.ResponseWriter, k int) { link(w, k+1); index(w, k) }, 600, 0, upstream.ErrUnusable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scripted := func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if testenv.Kind(r.URL.Path) != "referrers" {
						next.ServeHTTP(w, r)
						return
					}
					k, _ := strconv.Atoi(r.URL.Query().Get("page"))
					tc.page(w, max(k, 1))
				})
			}
			z := testenv.NewZooMember(t, "scripted referrers pages", nil, scripted)
			c, _ := newClient(t, z.Front.URL.String(), upstream.Timeouts{})
			body, err := c.Referrers(bounded(t), "org/app", digest.FromString("subject"), tc.maxSize)
			switch {
			case err == nil:
				t.Fatalf("got %d bytes, want an error", len(body))
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Errorf("got %v, want %v", err, tc.want)
			case tc.want == nil && upstream.StatusOf(err) != http.StatusInternalServerError:
				t.Errorf("got %v, want the upstream's 500", err)
			}
			if n := z.Front.Count(http.MethodGet, "referrers"); tc.wantGets > 0 && n != tc.wantGets {
				t.Errorf("got %d referrers GETs, want %d", n, tc.wantGets)
			}
			if n := z.Front.Count(http.MethodGet, "manifest"); n != 0 {
				t.Errorf("got %d tag-schema GETs, want 0 (the API answered page 1)", n)
			}
		})
	}
}

// pageTwo scripts a list whose second page gets answer instead.
func pageTwo(answer func(http.ResponseWriter)) func(http.ResponseWriter, int) {
	return func(w http.ResponseWriter, k int) {
		if k == 2 {
			answer(w)
			return
		}
		link(w, k+1)
		index(w, k)
	}
}

// link links page k of the scripted list, relative, as the spec's example.
func link(w http.ResponseWriter, k int) {
	w.Header().Set("Link", fmt.Sprintf(`</v2/org/app/referrers/%s?page=%d>; rel="next"`, digest.FromString("subject"), k))
}

// index writes page k: an image index of one descriptor of about 250 bytes.
func index(w http.ResponseWriter, k int) {
	w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
	fmt.Fprintf(w, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d,"artifactType":%q}]}`,
		digest.FromString(strconv.Itoa(k)), 100+k, sig)
}
