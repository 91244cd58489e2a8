package proxy

import (
	"context"
	"net/http"

	"github.com/pullthrough/pullthrough/internal/cache"
	"github.com/pullthrough/pullthrough/internal/oci"
	"github.com/pullthrough/pullthrough/internal/upstream"
)

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
	q, err := upstream.PageQuery(r.URL.Query())
	if err != nil {
		return oci.ErrPaginationInvalid.With(err.Error(), nil)
	}
	cacheKey := cache.TagListKey(rt.up.Host(), rt.name)
	if q != "" {
		cacheKey = ""
	}
	body, next, err := rt.up.Tags(ctx, rt.name, q)
	result := cachePassthrough
	if err != nil {
		err = fromUpstream(err, oci.ErrNameUnknown)
		if cacheKey == "" {
			return err
		}
		stale, serr := p.cache.TagList(ctx, cacheKey)
		if serr != nil {
			return err
		}
		body, result = stale, cacheStale
	} else if cacheKey != "" {
		p.cache.KeepTagList(ctx, cacheKey, body)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set(headerCache, result)
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
