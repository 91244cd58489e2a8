package proxy

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullthrough/pullthrough/internal/cache"
	"github.com/pullthrough/pullthrough/internal/oci"
)

func (p *Proxy) serveBlob(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route) error {
	if joined, err := p.joinStream(ctx, w, r, rt); joined {
		return err
	}
	key := cache.BlobKey(rt.digest)
	result := cacheHit
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
		return oci.ErrUnavailable.With("cache storage unavailable", err)
	case r.Method == http.MethodHead:
		// A HEAD must not cost a download: ask the upstream for the size.
		size, err := rt.up.HeadBlob(ctx, rt.name, rt.digest)
		if err != nil {
			return fromUpstream(err, oci.ErrBlobUnknown)
		}
		blobHeaders(w.Header(), rt.digest, size, cachePassthrough)
		w.WriteHeader(http.StatusOK)
		return nil
	default:
		result = cacheMiss
		if size, err = p.serveMiss(ctx, w, r, rt); err != nil || size < 0 {
			return err
		}
	}
	blobHeaders(w.Header(), rt.digest, size, result)
	return p.serveStoredBlob(ctx, w, r, key)
}

// serveMiss answers a GET of a blob missing from the store as the fill
// engine decides (fill.Engine.Miss): a redirect to the upstream's blob URL,
// a stream of the bytes as they arrive (a range of them for a ranged GET),
// or, once the blob is stored, its size for the caller to serve from the
// store. size is -1 when the answer was written.
func (p *Proxy) serveMiss(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route) (size int64, err error) {
	out, err := p.fills.Miss(ctx, fillBlob(rt), true)
	switch {
	case err != nil:
		return -1, fromUpstream(err, oci.ErrBlobUnknown)
	case out.Location != "":
		w.Header().Set(headerCache, cacheUpstream)
		w.Header().Set("Location", out.Location)
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusTemporaryRedirect)
		return -1, nil
	case out.Stream != nil:
		if out.Stream.For() != rt.name {
			if err := p.checkLinkedBlob(ctx, rt); err != nil {
				out.Stream.Close()
				return -1, err
			}
		}
		if handled, err := p.sendStream(ctx, w, r, rt, out.Stream); handled {
			return -1, err
		}
		// A Range the stream cannot answer: from the store, once filled.
		if out, err = p.fills.Fill(ctx, fillBlob(rt)); err != nil {
			return -1, fromUpstream(err, oci.ErrBlobUnknown)
		}
	}
	// The fill may have been another repository's (links.go).
	if err := p.checkLinkedBlob(ctx, rt); err != nil {
		return -1, err
	}
	return out.Size, nil
}

// serveStoredBlob answers a GET or HEAD of a blob in the store whose
// headers are set: a redirect to a presigned URL where the store can sign
// one, else the bytes (with Range support where the store can seek).
func (p *Proxy) serveStoredBlob(ctx context.Context, w http.ResponseWriter, r *http.Request, key string) error {
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
			return oci.ErrUnavailable.With("cache storage unavailable", err)
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
		return oci.ErrUnavailable.With("cache storage unavailable", err)
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

func blobHeaders(h http.Header, d digest.Digest, size int64, result string) {
	h.Set("Content-Type", "application/octet-stream")
	h.Set(headerDigest, d.String())
	h.Set("ETag", `"`+d.String()+`"`)
	h.Set(headerCache, result)
	setLength(h, size)
}

// signFunc presigns one request for an object in the store.
type signFunc func(ctx context.Context, key string, ttl time.Duration) (string, error)

// presign reuses a presigned URL for the first half of its life: signing
// costs more than the rest of a hit, and a URL is as good for one client as
// for the next. memoKey names the request (method and key).
func (p *Proxy) presign(ctx context.Context, memoKey, key string, sign signFunc) (string, error) {
	if u, ok := p.cache.PresignedURL(memoKey); ok {
		return u, nil
	}
	u, err := sign(ctx, key, p.cfg.PresignTTL)
	if err != nil {
		return "", err
	}
	p.cache.NotePresigned(memoKey, u)
	return u, nil
}
