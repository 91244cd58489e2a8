package upstream

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestNextPage: only a next link that pages the same tag list on the host
// asked (or the one that answered after a redirect) is kept, and only its
// pagination query, re-encoded without ns.
func TestNextPage(t *testing.T) {
	sent, _ := url.Parse("https://reg.example/v2/org/app/tags/list")
	final, _ := url.Parse("https://regional.example/v2/prefix/org/app/tags/list?n=2")
	long := strings.Repeat("x", maxPageQuery)
	for _, tc := range []struct {
		name, link string
		answered   *url.URL
		want       string // encoded query, "" for no link
	}{
		{"relative", `</v2/org/app/tags/list?last=b&n=2>; rel="next"`, sent, "last=b&n=2"},
		{"absolute on upstream", `<https://reg.example/v2/org/app/tags/list?n=2&next_page=gAAA%3D%3D>; rel="next"`, sent, "n=2&next_page=gAAA%3D%3D"},
		{"upper-case host", `<https://REG.example/v2/org/app/tags/list?n=2&last=b>; rel="next"`, sent, "last=b&n=2"},
		{"after redirect", `</v2/prefix/org/app/tags/list?n=2&last=b>; rel="next"`, final, "last=b&n=2"},
		{"among others", `</v2/org/app/tags/list?last=a>; rel="prev", </v2/org/app/tags/list?last=c>; rel="next"`, sent, "last=c"},
		{"ns injected", `</v2/org/app/tags/list?last=b&ns=other.example>; rel="next"`, sent, "last=b"},
		{"other host", `<https://evil.example/v2/org/app/tags/list?last=b>; rel="next"`, sent, ""},
		{"other repository", `</v2/org/other/tags/list?last=b>; rel="next"`, sent, ""},
		{"other path", `</v2/org/app/manifests/latest?last=b>; rel="next"`, sent, ""},
		{"not next", `</v2/org/app/tags/list?last=b>; rel="prev"`, sent, ""},
		{"userinfo", `<https://u:p@reg.example/v2/org/app/tags/list?last=b>; rel="next"`, sent, ""},
		{"scheme", `<file:///v2/org/app/tags/list?last=b>; rel="next"`, sent, ""},
		{"too long", `</v2/org/app/tags/list?last=` + long + `>; rel="next"`, sent, ""},
		{"odd parameter", `</v2/org/app/tags/list?X-Bad=1>; rel="next"`, sent, ""},
		{"no query", `</v2/org/app/tags/list>; rel="next"`, sent, ""},
		{"garbage", `<<>>;;rel=`, sent, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := &http.Response{Header: http.Header{"Link": {tc.link}}, Request: &http.Request{URL: tc.answered}}
			got := nextPage(resp, sent).Encode()
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func FuzzNextLink(f *testing.F) {
	for _, s := range []string{`</v2/a/tags/list?n=1>; rel="next"`, `<a>; rel=prev, <b>; rel="next last"`, `<`, `>`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		sent, _ := url.Parse("https://reg.example/v2/a/tags/list")
		if v := nextPage(&http.Response{Header: http.Header{"Link": {h}}}, sent); v != nil {
			if v.Has("ns") || len(v.Encode()) > maxPageQuery {
				t.Errorf("got %v", v)
			}
		}
	})
}

// TestPageQueryN: an n above MaxPageSize is clamped to it (the spec lets a
// registry return fewer than n; distribution #4844, PR #4856), so a
// Renovate-style n=10000 or more lists tags; what is no non-negative
// integer is refused.
func TestPageQueryN(t *testing.T) {
	for _, tc := range []struct {
		n, want string // want "" for refused
	}{
		{"0", "n=0"},
		{"100", "n=100"},
		{"10000", "n=10000"},
		{"10001", "n=10000"},
		{"20000", "n=10000"},
		{"4294967296", "n=10000"},
		{"99999999999999999999999", "n=10000"},
		{"-1", ""},
		{"abc", ""},
		{"1e3", ""},
		{"", ""},
		{"+5", ""},
	} {
		t.Run(tc.n, func(t *testing.T) {
			got, err := PageQuery(url.Values{"n": {tc.n}})
			if tc.want == "" {
				if err == nil {
					t.Errorf("got %q, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
