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

func blobKey(d digest.Digest) string {
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

func (p *Proxy) serveBlob(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route) error {
	key := blobKey(rt.digest)
	cache := cacheHit
	size, known := p.known.get(rt.digest, p.now(), knownBlobsTTL)
	var err error
	if !known {
		size, err = p.store.Stat(ctx, key)
	}
	switch {
	case err == nil:
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
		size, redirected, err = p.missing(ctx, w, rt)
		if err != nil || redirected {
			return err
		}
	}
	if !known {
		p.known.put(rt.digest, size, p.now())
	}
	blobHeaders(w.Header(), rt.digest, size, cache)
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return nil
	}
	if ps, ok := p.store.(Presigner); ok {
		u, err := p.presign(ctx, ps, key)
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
// registries refuse HEAD on blobs; a one-byte ranged GET tells the size too.
func (p *Proxy) headUpstreamBlob(ctx context.Context, rt route) (int64, error) {
	if rt.up.backingOff(p.now()) {
		return 0, ErrTooManyRequests.With("upstream asked the mirror to back off and the blob is not cached", nil)
	}
	ctx, cancel := context.WithTimeout(ctx, rt.up.timeouts.manifest)
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
		return 0, upstreamError(resp, ErrBlobUnknown)
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
	return 0, upstreamError(resp, ErrBlobUnknown)
}

// Blobs are immutable, so knowing one exists saves a store request on
// every hit. Entries expire so that objects removed by a bucket lifecycle
// rule are noticed.
const knownBlobsTTL = 10 * time.Minute

// presign reuses a presigned URL for the first half of its life: signing
// costs more than the rest of a hit, and a URL is as good for one client as
// for the next.
func (p *Proxy) presign(ctx context.Context, ps Presigner, key string) (string, error) {
	reuse := p.cfg.PresignTTL / 2
	if u, ok := p.presigned.get(key, p.now(), reuse); ok {
		return u, nil
	}
	u, err := ps.PresignGet(ctx, key, p.cfg.PresignTTL)
	if err != nil {
		return "", err
	}
	p.presigned.put(key, u, p.now())
	return u, nil
}
