// Package store holds pullthrough's storage backends: S3 for Lambda and
// shared deployments, a local directory for the plain local server.
//
// Both speak the same small contract (see the conformance tests): Stat,
// Get, Put of small objects, and Create for streamed writes that become
// visible only on Commit, and only if nothing is at the key yet. The
// package knows nothing about registries; keys come from the caller.
package store

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// ErrNotFound is returned when no object is at a key. It matches
// fs.ErrNotExist under errors.Is so callers need not import this package.
var ErrNotFound = fmt.Errorf("store: object not found: %w", fs.ErrNotExist)

// ErrExists is returned by Commit when an object already exists at the key
// (another writer published first). It matches fs.ErrExist.
var ErrExists = fmt.Errorf("store: object already exists: %w", fs.ErrExist)

// validKey rejects keys that could escape the store's namespace. Callers
// build keys only from validated parts; this is the second fence.
func validKey(key string) error {
	if key == "" || len(key) > 900 || strings.HasPrefix(key, "/") || strings.ContainsAny(key, "\\\x00") {
		return fmt.Errorf("store: invalid key %q", key)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("store: invalid key %q", key)
		}
	}
	return nil
}

// Upload is a streamed write in progress; exactly one of Commit and Abort
// must be called. It is an alias of an interface literal so that a consumer
// may declare the identical type without importing this package.
type Upload = interface {
	io.Writer
	Commit(ctx context.Context) error
	Abort(ctx context.Context) error
}
