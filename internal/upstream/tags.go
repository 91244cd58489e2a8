package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/pullthrough/pullthrough/internal/oci"
)

const (
	// MaxTagListBody bounds a tag list read into memory.
	MaxTagListBody = 16 << 20
	// MaxPageSize is the largest n sent upstream for a tag list page; a
	// larger one is clamped to it (PageQuery).
	MaxPageSize = 10000
	// maxPageQuery bounds the pagination query passed to an upstream, and
	// maxPageParams the number of its parameters.
	maxPageQuery  = 1024
	maxPageParams = 8
)

// pageParamName is a pagination parameter's name: n, last, next_page,
// nextToken...
var pageParamName = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_]{0,31}$`)

// PageQuery is the query to send upstream for a tag list: the client's (or
// a next link's) parameters without ns, bounded in number and length and
// re-encoded, so nothing but these parameters reaches the upstream URL.
func PageQuery(v url.Values) (string, error) {
	v = cloneValues(v)
	v.Del("ns")
	if len(v) > maxPageParams {
		return "", fmt.Errorf("at most %d query parameters", maxPageParams)
	}
	for k := range v {
		if !pageParamName.MatchString(k) {
			return "", fmt.Errorf("unexpected query parameter %q", oci.Truncate(k))
		}
	}
	if v.Has("n") {
		// The spec lets a registry that sends a Link return fewer than n
		// tags, so a larger n is clamped, not refused: Renovate lists with
		// n=10000, and distribution's 400 for n above its limit broke it
		// behind pull-through caches (distribution #4844, PR #4856).
		// Only what is no non-negative integer is refused.
		n := v.Get("n")
		x, err := strconv.ParseUint(n, 10, 32)
		switch {
		case err != nil && !(errors.Is(err, strconv.ErrRange) && strings.Trim(n, "0123456789") == ""):
			return "", errors.New("n must be a non-negative integer")
		case err != nil || x > MaxPageSize:
			v.Set("n", strconv.Itoa(MaxPageSize))
		}
	}
	q := v.Encode()
	if len(q) > maxPageQuery {
		return "", fmt.Errorf("pagination query longer than %d bytes", maxPageQuery)
	}
	return q, nil
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// Tags GETs a tag list page (query: the PageQuery to send, "" for none)
// and returns its body, of at most MaxTagListBody bytes, and the query of
// its next page, if the upstream links one on the same tag list.
func (c *Client) Tags(ctx context.Context, name, query string) ([]byte, url.Values, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeouts.metadata)
	defer cancel()
	rest := "tags/list"
	if query != "" {
		rest += "?" + query
	}
	resp, err := c.do(ctx, http.MethodGet, name, rest, nil, true)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if err := c.checkStatus(resp, http.StatusOK); err != nil {
		return nil, nil, err
	}
	body, err := readBounded(resp.Body, MaxTagListBody)
	if err != nil {
		return nil, nil, fmt.Errorf("tag list: %w: %w", ErrUnusable, err)
	}
	if body, err = registryTagList(body); err != nil {
		return nil, nil, err
	}
	sent := c.base.JoinPath("v2", name, "tags", "list")
	return body, nextPage(resp, sent), nil
}

// nextPage reads the rel="next" target of a response's Link header and
// returns its query when it pages the same list (a tag list, a referrers
// list) on the host that was asked (sent) or the one that answered (after
// redirects). A link to any
// other place, or with a query the mirror would not send, is dropped.
func nextPage(resp *http.Response, sent *url.URL) url.Values {
	target := nextLink(strings.Join(resp.Header.Values("Link"), ","))
	if target == "" {
		return nil
	}
	ref, err := url.Parse(target)
	if err != nil {
		return nil
	}
	base := sent
	if resp.Request != nil && resp.Request.URL != nil {
		base = resp.Request.URL
	}
	u := base.ResolveReference(ref)
	if u.Scheme != "http" && u.Scheme != "https" || u.User != nil {
		return nil
	}
	same := func(a *url.URL) bool { return strings.EqualFold(u.Host, a.Host) && u.Path == a.Path }
	if !same(sent) && !same(base) {
		return nil
	}
	q, err := PageQuery(u.Query())
	if err != nil || q == "" {
		return nil
	}
	v, _ := url.ParseQuery(q)
	return v
}

// nextLink finds the target of the rel="next" link in a Link header value
// (RFC 8288): `<url>; rel="next"`, possibly among other links.
func nextLink(h string) string {
	for h != "" {
		start := strings.IndexByte(h, '<')
		if start < 0 {
			return ""
		}
		end := strings.IndexByte(h[start:], '>')
		if end < 0 {
			return ""
		}
		target := h[start+1 : start+end]
		h = h[start+end+1:]
		params := h
		if i := strings.IndexByte(h, '<'); i >= 0 {
			params = h[:i]
		}
		for _, p := range strings.Split(params, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.EqualFold(strings.TrimSpace(k), "rel") {
				v = strings.Trim(strings.TrimRight(strings.TrimSpace(v), ", "), `"`)
				for _, rel := range strings.Fields(v) {
					if strings.EqualFold(rel, "next") {
						return target
					}
				}
			}
		}
	}
	return ""
}
