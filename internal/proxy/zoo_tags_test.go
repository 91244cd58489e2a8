package proxy_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// queriesSeen records the query of every tag-list request an upstream
// receives.
func queriesSeen(up *testenv.Upstream) func() []string {
	var mu sync.Mutex
	var seen []string
	up.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if testenv.Kind(r.URL.Path) == "tags" {
			mu.Lock()
			seen = append(seen, r.URL.RawQuery)
			mu.Unlock()
		}
		return false
	})
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

// followTags lists tags through the mirror from path, following Link
// headers for at most 10 pages, and returns the tags and the links.
func followTags(t *testing.T, base, path string) (tags, links []string) {
	t.Helper()
	for i := 0; path != ""; i++ {
		if i == 10 {
			t.Fatalf("still paging after 10 pages: %v", links)
		}
		resp := do(t, http.MethodGet, base+path, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: got %d: %s", path, resp.StatusCode, resp.body)
		}
		var body struct{ Tags []string }
		if err := json.Unmarshal(resp.body, &body); err != nil {
			t.Fatal(err)
		}
		tags = append(tags, body.Tags...)
		path = ""
		if l := resp.Header.Get("Link"); l != "" {
			links = append(links, l)
			target, _, ok := strings.Cut(strings.TrimPrefix(l, "<"), ">")
			if !ok || !strings.HasPrefix(target, "/v2/") {
				t.Fatalf("got Link %q, want a relative /v2/ link", l)
			}
			path = target
		}
	}
	return tags, links
}

// TestTagPagingStaysOnRoute: following the next link of a tag list asked
// for on a registry named by path prefix or ns lists that registry's tags
// (both upstreams are the distribution registry, with a repository of the
// same name),
// never the default registry's repository of the same name; ns never goes
// upstream.
func TestTagPagingStaysOnRoute(t *testing.T) {
	// The distribution registry pages with n and last and a relative
	// `Link: </v2/<name>/tags/list?last=<tag>&n=<n>>; rel="next"`.
	hubReg, ghReg := testenv.DistributionRegistry(t), testenv.DistributionRegistry(t)
	hub, gh := testenv.NewUpstream(t, hubReg), testenv.NewUpstream(t, ghReg)
	seen := queriesSeen(gh)
	for _, tag := range []string{"a", "b", "c", "d", "e"} {
		testenv.SeedImage(t, ghReg, "org/app:"+tag, 256, 1)
	}
	for _, tag := range []string{"x", "y", "z", "zz"} {
		testenv.SeedImage(t, hubReg, "org/app:"+tag, 256, 1)
	}
	m := multiMirror(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways},
		proxy.UpstreamConfig{Host: "docker.io", URL: hub.URL.String()},
		proxy.UpstreamConfig{Host: "ghcr.example", URL: gh.URL.String()})
	for _, path := range []string{
		"/v2/ghcr.example/org/app/tags/list?n=2",
		"/v2/org/app/tags/list?n=2&ns=ghcr.example",
		"/v2/ghcr.example/org/app/tags/list?n=2&ns=ghcr.example",
	} {
		t.Run(path, func(t *testing.T) {
			tags, links := followTags(t, m.URL, path)
			if got := strings.Join(tags, ","); got != "a,b,c,d,e" {
				t.Errorf("got tags %s over links %v, want a,b,c,d,e", got, links)
			}
		})
	}
	for _, q := range seen() {
		if strings.Contains(q, "ns=") {
			t.Errorf("the upstream was sent query %q, want no ns", q)
		}
	}
}

// TestQuayTagPaging: a Quay-like upstream pages with an opaque next_page
// token in an absolute Link on its own host; the mirror passes the token
// through and every tag is listed once.
func TestQuayTagPaging(t *testing.T) {
	z := testenv.QuayLike(t)
	var want []string
	for i := range 5 {
		tag := fmt.Sprintf("v%d", i)
		testenv.SeedImage(t, z.Reg, "org/app:"+tag, 256, 1)
		want = append(want, tag)
	}
	up := z.Front
	m := mirrorFor(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{Host: "quay.example"}, up)
	for _, path := range []string{"/v2/org/app/tags/list?n=2", "/v2/quay.example/org/app/tags/list?n=2", "/v2/org/app/tags/list?n=2&ns=quay.example"} {
		tags, links := followTags(t, m.URL, path)
		if got := strings.Join(tags, ","); got != strings.Join(want, ",") {
			t.Errorf("%s: got tags %s over links %v, want %s", path, got, links, strings.Join(want, ","))
		}
	}
}

// TestTagListLargeN: a tag list asked for with n above the mirror's page
// limit, as Renovate asks (n=10000 and more; distribution #4844), is
// listed with n clamped to the limit, as distribution now does (PR #4856;
// the spec lets a registry return fewer than n); an n that is no
// non-negative integer is refused without asking the upstream.
func TestTagListLargeN(t *testing.T) {
	m, reg := newMirror(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{})
	for _, tag := range []string{"a", "b", "c"} {
		testenv.SeedImage(t, reg, "org/app:"+tag, 256, 1)
	}
	seen := queriesSeen(m.Up)
	for _, tc := range []struct {
		n         string
		status    int
		upstreamN string // the n the upstream was sent; "" for no request
	}{
		{"10000", http.StatusOK, "10000"},
		{"10001", http.StatusOK, "10000"},
		{"50000", http.StatusOK, "10000"},
		{"99999999999999999999", http.StatusOK, "10000"},
		{"-1", http.StatusBadRequest, ""},
		{"ten", http.StatusBadRequest, ""},
	} {
		t.Run(tc.n, func(t *testing.T) {
			before := len(seen())
			resp := do(t, http.MethodGet, m.URL+"/v2/org/app/tags/list?n="+tc.n, nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("got %d %s, want %d", resp.StatusCode, resp.body, tc.status)
			}
			queries := seen()[before:]
			if tc.upstreamN == "" {
				assertOCIError(t, resp, "PAGINATION_NUMBER_INVALID")
				if len(queries) != 0 {
					t.Errorf("got upstream queries %v, want none", queries)
				}
				return
			}
			var body struct{ Tags []string }
			if err := json.Unmarshal(resp.body, &body); err != nil || strings.Join(body.Tags, ",") != "a,b,c" {
				t.Errorf("got %s, want tags a,b,c", resp.body)
			}
			if want := "n=" + tc.upstreamN; len(queries) != 1 || queries[0] != want {
				t.Errorf("got upstream queries %v, want [%s]", queries, want)
			}
		})
	}
}
