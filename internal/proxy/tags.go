package proxy

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const (
	maxTagListBody = 16 << 20
	// maxPageQuery bounds the pagination query passed to an upstream, and
	// maxPageParams the number of its parameters.
	maxPageQuery  = 1024
	maxPageParams = 8
)

// pageParamName is a pagination parameter's name: n, last, next_page...
var pageParamName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// serveTags passes tag listing through to the upstream, keeping the last
// good unpaginated answer to serve when the upstream fails.
//
// Pagination is the upstream's business: the distribution spec pages with
// n and last and a relative Link, Quay with an opaque next_page token in an
// absolute Link (quay endpoints/v2/__init__.py, paginate). The client's
// parameters (but ns) go upstream as they are, and the upstream's next link
// is rewritten onto the route the client used, so following it stays on
// the same registry.
func (p *Proxy) serveTags(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route) error {
	q, err := pageQuery(r.URL.Query())
	if err != nil {
		return err
	}
	cacheKey := tagListKey(rt.up.Host(), rt.name)
	rest := "tags/list"
	if q != "" {
		rest += "?" + q
		cacheKey = ""
	}
	body, next, err := p.fetchTags(ctx, rt.up, rt.name, rest)
	cache := cachePassthrough
	if err != nil {
		if cacheKey == "" {
			return err
		}
		rc, _, serr := p.store.Get(ctx, cacheKey)
		if serr != nil {
			return err
		}
		defer rc.Close()
		body, serr = io.ReadAll(io.LimitReader(rc, maxTagListBody))
		if serr != nil {
			return err
		}
		cache = cacheStale
	} else if cacheKey != "" {
		p.cache.keepTagList(ctx, cacheKey, body)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set(headerCache, cache)
	if next != nil {
		if ns := r.URL.Query().Get("ns"); ns != "" {
			next.Set("ns", ns)
		}
		h.Set("Link", "<"+r.URL.EscapedPath()+"?"+next.Encode()+`>; rel="next"`)
	}
	setLength(h, int64(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
	return nil
}

// pageQuery is the query to send upstream for a tag list: the client's (or
// a next link's) parameters without ns, bounded in number and length and
// re-encoded, so nothing but these parameters reaches the upstream URL.
func pageQuery(v url.Values) (string, error) {
	v = cloneValues(v)
	v.Del("ns")
	if len(v) > maxPageParams {
		return "", ErrPaginationInvalid.With(fmt.Sprintf("at most %d query parameters", maxPageParams), nil)
	}
	for k := range v {
		if !pageParamName.MatchString(k) {
			return "", ErrPaginationInvalid.With(fmt.Sprintf("unexpected query parameter %q", truncate(k)), nil)
		}
	}
	if n := v.Get("n"); v.Has("n") {
		if x, err := strconv.Atoi(n); err != nil || x < 0 || x > 10000 {
			return "", ErrPaginationInvalid.With("n must be an integer from 0 to 10000", nil)
		}
	}
	q := v.Encode()
	if len(q) > maxPageQuery {
		return "", ErrPaginationInvalid.With(fmt.Sprintf("pagination query longer than %d bytes", maxPageQuery), nil)
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

// fetchTags GETs a tag list and returns its body and the query of its next
// page, if the upstream links one on the same tag list.
func (p *Proxy) fetchTags(ctx context.Context, up *Upstream, name, rest string) ([]byte, url.Values, error) {
	ctx, cancel := context.WithTimeout(ctx, up.timeouts.metadata)
	defer cancel()
	resp, err := up.do(ctx, http.MethodGet, name, rest, nil)
	if err != nil {
		return nil, nil, ErrUnavailable.With("upstream registry unreachable", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		up.noteFailure(resp, p.now())
		return nil, nil, upstreamError(resp, ErrNameUnknown, p.now())
	}
	body, err := readBounded(resp.Body, maxTagListBody)
	if err != nil {
		return nil, nil, ErrUnavailable.With("upstream tag list download failed", err)
	}
	sent := up.base.JoinPath("v2", name, "tags", "list")
	return body, nextPage(resp, sent), nil
}

// nextPage reads the rel="next" target of a response's Link header and
// returns its query when it pages the same tag list on the host that was
// asked (sent) or the one that answered (after redirects). A link to any
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
	q, err := pageQuery(u.Query())
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

// keepTagList stores the last good full tag list for stale serving, but
// only when it changed: a list is rewritten once per change, not once per
// request (a PUT costs 12 times a GET on S3). The first request per process
// compares with the stored copy.
func (c *cache) keepTagList(ctx context.Context, key string, body []byte) {
	sum := sha256.Sum256(body)
	old, ok := c.tagLists.get(key, c.now(), 24*time.Hour)
	if !ok {
		if rc, _, err := c.store.Get(ctx, key); err == nil {
			stored, rerr := io.ReadAll(io.LimitReader(rc, maxTagListBody+1))
			rc.Close()
			if rerr == nil {
				old, ok = sha256.Sum256(stored), true
			}
		}
	}
	if ok && old == sum {
		c.tagLists.put(key, sum, c.now())
		return
	}
	if err := c.store.Put(ctx, key, body); err != nil {
		c.log.Warn("could not cache tag list", "cause", err.Error())
		return
	}
	c.tagLists.put(key, sum, c.now())
}
