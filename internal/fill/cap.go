package fill

import (
	"fmt"
	"io"
	"net/http"

	"github.com/pullthrough/pullthrough/internal/oci"
)

// DefaultMaxBlobSize is the binary's default for Config.MaxBlobSize
// (PULLTHROUGH_MAX_BLOB_SIZE): 10 GiB, above the layers of common images
// (CUDA and ML layers reach a few GiB) and far below what an abuser could
// otherwise make the mirror fetch and store at the operator's expense.
const DefaultMaxBlobSize = 10 << 30

// ErrBlobTooLarge refuses a blob over Config.MaxBlobSize. DENIED (403),
// not SIZE_INVALID or BLOB_UNKNOWN: SIZE_INVALID is the spec's answer to a
// push whose length does not match, BLOB_UNKNOWN would tell the client the
// blob does not exist, and the distribution spec's DENIED ("requested
// access to the resource is denied") is what this is, a policy refusal.
// Docker's registry-mirrors and containerd's hosts.toml mirrors then pull
// the blob from the next host (the upstream itself).
var ErrBlobTooLarge = &oci.Error{Code: "DENIED", Status: http.StatusForbidden, Message: "blob larger than this mirror's size cap"}

// overCap fails with ErrBlobTooLarge when size (from the upstream's
// Content-Length or HEAD) is over the cap; a negative size (unknown) is
// left to cappedReader.
func (e *Engine) overCap(b Blob, size int64) error {
	if limit := e.cfg.MaxBlobSize; limit > 0 && size > limit {
		return e.tooLarge(b, fmt.Sprintf("upstream announced %d bytes", size))
	}
	return nil
}

func (e *Engine) tooLarge(b Blob, why string) *oci.Error {
	limit := e.cfg.MaxBlobSize
	e.log.Warn("blob refused: over the size cap", "digest", b.Digest.String(), "max_blob_size", limit, "why", why)
	return ErrBlobTooLarge.With(fmt.Sprintf("blob larger than this mirror's size cap of %d bytes", limit),
		fmt.Errorf("%s@%s: %s", b.Name, b.Digest, why))
}

// cappedReader fails with ErrBlobTooLarge as soon as more than limit bytes
// were read: a body without a Content-Length (chunked) is cut there, before
// the store has more than limit bytes of it, and the fill aborts its
// upload.
type cappedReader struct {
	r    io.Reader
	left int64
	over func() error
	err  error
}

func (e *Engine) capped(b Blob, r io.Reader) io.Reader {
	limit := e.cfg.MaxBlobSize
	if limit <= 0 {
		return r
	}
	return &cappedReader{r: r, left: limit, over: func() error {
		return e.tooLarge(b, fmt.Sprintf("body without a length grew past %d bytes", limit))
	}}
}

func (c *cappedReader) Read(b []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	// One byte more than allowed tells an exact fit from an overflow.
	if int64(len(b)) > c.left+1 {
		b = b[:c.left+1]
	}
	n, err := c.r.Read(b)
	if int64(n) > c.left {
		c.err = c.over()
		return int(c.left), c.err
	}
	c.left -= int64(n)
	return n, err
}
