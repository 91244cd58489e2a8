package proxy

import (
	"context"
	"time"

	"github.com/pullthrough/pullthrough/internal/cache"
	"github.com/pullthrough/pullthrough/internal/fill"
)

// Store is what the proxy needs from a storage backend. Keys are slash
// separated and built only from validated route fields.
//
// Not-found is reported with an error that matches fs.ErrNotExist under
// errors.Is, and "already exists" (a conditional publish that lost a race)
// with one that matches fs.ErrExist, so this package needs no import of a
// store implementation.
//
// It is the union of what the cache (cache.Store: Stat, Get, Put) and the
// fill engine (fill.Store: Stat, Create) declare. If the reader Get returns
// is also an io.ReadSeeker, blobs are served from it directly with Range
// support.
type Store interface {
	cache.Store
	fill.Store
}

// Upload is a write in progress (fill.Upload); exactly one of Commit and
// Abort must be called. Commit publishes the object if no object exists at
// the key yet; if one does, it returns an error matching fs.ErrExist and
// publishes nothing.
type Upload = fill.Upload

// Presigner is implemented by stores that can hand clients a short-lived URL
// to fetch an object themselves (S3). Blob hits are then answered with a
// redirect and the bytes never pass through the proxy.
type Presigner interface {
	PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error)
}

// HeadPresigner is implemented by stores that can also presign a HEAD of
// an object (S3). Behind a front end that drops Content-Length (see
// Config.NoContentLength) a blob HEAD on a hit is then a redirect to it, so
// that the client learns the size from the store.
type HeadPresigner interface {
	PresignHead(ctx context.Context, key string, ttl time.Duration) (string, error)
}
