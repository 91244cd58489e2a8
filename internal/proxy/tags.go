package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

const maxTagListBody = 16 << 20

// serveTags passes tag listing through to the upstream, keeping the last
// good unpaginated answer to serve when the upstream fails.
func (p *Proxy) serveTags(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route) error {
	q := url.Values{}
	if n := r.URL.Query().Get("n"); n != "" {
		v, err := strconv.Atoi(n)
		if err != nil || v < 0 || v > 10000 {
			return &Error{Code: "PAGINATION_NUMBER_INVALID", Status: http.StatusBadRequest, Message: "n must be an integer from 0 to 10000"}
		}
		q.Set("n", n)
	}
	if last := r.URL.Query().Get("last"); last != "" {
		if !anchoredTag(last) {
			return ErrManifestInvalid.With("invalid tag in last", nil)
		}
		q.Set("last", last)
	}
	cacheKey := "tags/" + rt.up.Host() + "/" + rt.name + "/_list"
	rest := "tags/list"
	if len(q) > 0 {
		rest += "?" + q.Encode()
		cacheKey = ""
	}
	body, link, err := p.fetchTags(ctx, rt.up, rt.name, rest)
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
		if err := p.store.Put(ctx, cacheKey, body); err != nil {
			p.log.Warn("could not cache tag list", "cause", err.Error())
		}
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set(headerCache, cache)
	if link != "" {
		h.Set("Link", link)
	}
	setLength(h, int64(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
	return nil
}

func (p *Proxy) fetchTags(ctx context.Context, up *Upstream, name, rest string) ([]byte, string, error) {
	ctx, cancel := context.WithTimeout(ctx, up.timeouts.manifest)
	defer cancel()
	resp, err := up.do(ctx, http.MethodGet, name, rest, nil)
	if err != nil {
		return nil, "", ErrUnavailable.With("upstream registry unreachable", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		up.noteFailure(resp, p.now())
		return nil, "", upstreamError(resp, ErrNameUnknown)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTagListBody+1))
	if err != nil {
		return nil, "", ErrUnavailable.With("upstream tag list download failed", err)
	}
	if len(body) > maxTagListBody {
		return nil, "", ErrUnavailable.With(fmt.Sprintf("upstream tag list larger than %d bytes", maxTagListBody), nil)
	}
	// Only a relative next-page link makes sense to pass on.
	link := resp.Header.Get("Link")
	if len(link) < 5 || link[:5] != "</v2/" {
		link = ""
	}
	return body, link, nil
}
