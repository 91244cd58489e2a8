package proxy

import (
	"context"
	"io"
	"time"
)

// Store is what the proxy needs from a storage backend. Keys are slash
// separated and built only from validated route fields.
//
// Not-found is reported with an error that matches fs.ErrNotExist under
// errors.Is, and "already exists" (a conditional publish that lost a race)
// with one that matches fs.ErrExist, so this package needs no import of a
// store implementation.
type Store interface {
	// Stat returns the size of the object at key.
	Stat(ctx context.Context, key string) (int64, error)
	// Get opens the object at key. If the returned reader is also an
	// io.ReadSeeker, blobs are served from it directly with Range support.
	Get(ctx context.Context, key string) (io.ReadCloser, int64, error)
	// Put stores a small object, replacing any previous one.
	Put(ctx context.Context, key string, data []byte) error
	// Create starts a streamed write of a possibly huge object. Nothing is
	// visible at key until Commit returns nil.
	Create(ctx context.Context, key string) (Upload, error)
}

// Upload is a write in progress; exactly one of Commit and Abort must be
// called. Commit publishes the object if no object exists at the key yet; if
// one does, it returns an error matching fs.ErrExist and publishes nothing.
// It is an alias of an interface literal so stores can return the identical
// type without importing this package.
type Upload = interface {
	io.Writer
	Commit(ctx context.Context) error
	Abort(ctx context.Context) error
}

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
