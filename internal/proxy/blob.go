package proxy

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

func (p *Proxy) serveBlob(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route) error {
	if joined, err := p.joinStream(ctx, w, r, rt); joined {
		return err
	}
	key := blobKey(rt.digest)
	cache := cacheHit
	// Every hit asks the store (one HeadObject on S3): a memo of existing
	// blobs would keep redirecting clients to an object that a sweep, a
	// bucket lifecycle rule or a person deleted, and the client, not the
	// mirror, would get the 404. Costs: "Eviction" in README.md.
	size, err := p.store.Stat(ctx, key)
	switch {
	case err == nil:
		if err := p.checkLinkedBlob(ctx, rt); err != nil {
			return err
		}
	case !errors.Is(err, fs.ErrNotExist):
		return ErrUnavailable.With("cache storage unavailable", err)
	case r.Method == http.MethodHead:
		// A HEAD must not cost a download: ask the upstream for the size.
		size, err := p.headUpstreamBlob(ctx, rt)
		if err != nil {
			return err
		}
		blobHeaders(w.Header(), rt.digest, size, cachePassthrough)
		w.WriteHeader(http.StatusOK)
		return nil
	default:
		cache = cacheMiss
		var redirected bool
		size, redirected, err = p.serveMiss(ctx, w, r, rt)
		if err != nil || redirected {
			return err
		}
		// The fill may have been another repository's (links.go).
		if err := p.checkLinkedBlob(ctx, rt); err != nil {
			return err
		}
	}
	blobHeaders(w.Header(), rt.digest, size, cache)
	var sign signFunc
	if ps, ok := p.store.(Presigner); ok {
		sign = ps.PresignGet
	}
	if r.Method == http.MethodHead {
		hp, ok := p.store.(HeadPresigner)
		if !p.cfg.NoContentLength || !ok {
			w.WriteHeader(http.StatusOK)
			return nil
		}
		// The length would not reach the client: S3's answer carries it.
		sign = hp.PresignHead
	}
	if sign != nil {
		u, err := p.presign(ctx, r.Method+" "+key, key, sign)
		if err != nil {
			return ErrUnavailable.With("cache storage unavailable", err)
		}
		h := w.Header()
		h.Del("Content-Type")
		h.Set("Location", u)
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusTemporaryRedirect)
		return nil
	}
	rc, _, err := p.store.Get(ctx, key)
	if err != nil {
		return ErrUnavailable.With("cache storage unavailable", err)
	}
	defer rc.Close()
	if rs, ok := rc.(io.ReadSeeker); ok {
		// Range requests (dockerd resumes with them) get 206.
		w.Header().Del("Content-Length")
		http.ServeContent(w, r, "", time.Time{}, rs)
		return nil
	}
	w.WriteHeader(http.StatusOK)
	io.Copy(w, rc)
	return nil
}

func blobHeaders(h http.Header, d digest.Digest, size int64, cache string) {
	h.Set("Content-Type", "application/octet-stream")
	h.Set(headerDigest, d.String())
	h.Set("ETag", `"`+d.String()+`"`)
	h.Set(headerCache, cache)
	setLength(h, size)
}

// headUpstreamBlob learns a blob's size without downloading it. Some
// registries refuse HEAD on blobs (ECR Public answers 401 even with a
// token, aws/containers-roadmap#2671; GHCR's blob storage answers 403); a
// one-byte ranged GET tells the size too (206 with Content-Range).
func (p *Proxy) headUpstreamBlob(ctx context.Context, rt route) (int64, error) {
	if rt.up.backingOff(p.now()) {
		return 0, ErrTooManyRequests.With("upstream asked the mirror to back off and the blob is not cached", nil)
	}
	ctx, cancel := context.WithTimeout(ctx, rt.up.timeouts.metadata)
	defer cancel()
	resp, err := rt.up.do(ctx, http.MethodHead, rt.name, "blobs/"+rt.digest.String(), nil)
	if err != nil {
		return 0, ErrUnavailable.With("upstream registry unreachable", err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK && resp.ContentLength >= 0 {
		return resp.ContentLength, nil
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusUnauthorized, http.StatusForbidden, http.StatusMethodNotAllowed:
	default:
		return 0, upstreamError(resp, ErrBlobUnknown, p.now())
	}
	resp, err = rt.up.do(ctx, http.MethodGet, rt.name, "blobs/"+rt.digest.String(), http.Header{"Range": {"bytes=0-0"}})
	if err != nil {
		return 0, ErrUnavailable.With("upstream registry unreachable", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode == http.StatusPartialContent {
		// Content-Range: bytes 0-0/12345
		if _, total, ok := strings.Cut(resp.Header.Get("Content-Range"), "/"); ok {
			if n, err := strconv.ParseInt(total, 10, 64); err == nil && n >= 0 {
				return n, nil
			}
		}
	}
	if resp.StatusCode == http.StatusOK && resp.ContentLength >= 0 {
		return resp.ContentLength, nil
	}
	return 0, upstreamError(resp, ErrBlobUnknown, p.now())
}

// signFunc presigns one request for an object in the store.
type signFunc func(ctx context.Context, key string, ttl time.Duration) (string, error)

// presign reuses a presigned URL for the first half of its life: signing
// costs more than the rest of a hit, and a URL is as good for one client as
// for the next. memoKey names the request (method and key).
func (p *Proxy) presign(ctx context.Context, memoKey, key string, sign signFunc) (string, error) {
	if u, ok := p.cache.presignedURL(memoKey); ok {
		return u, nil
	}
	u, err := sign(ctx, key, p.cfg.PresignTTL)
	if err != nil {
		return "", err
	}
	p.cache.presigned.put(memoKey, u, p.now())
	return u, nil
}
