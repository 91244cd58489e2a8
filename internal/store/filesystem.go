package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// Filesystem stores objects as files under a root directory. Writes go to
// a temporary file in the same file system and are published by rename or
// link, so readers never see partial content.
type Filesystem struct {
	root  string
	tmp   string
	casMu sync.Mutex // serializes ReplaceIf and DeleteIf
}

// NewFilesystem creates root if needed.
func NewFilesystem(root string) (*Filesystem, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	tmp := filepath.Join(abs, ".uploads")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return &Filesystem{root: abs, tmp: tmp}, nil
}

// Root is the directory objects live under.
func (f *Filesystem) Root() string { return f.root }

func (f *Filesystem) path(key string) (string, error) {
	if err := validKey(key); err != nil {
		return "", err
	}
	return filepath.Join(f.root, filepath.FromSlash(key)), nil
}

func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNotFound
	}
	return err
}

// Stat returns the size of the object at key.
func (f *Filesystem) Stat(ctx context.Context, key string) (int64, error) {
	p, err := f.path(key)
	if err != nil {
		return 0, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return 0, notFound(err)
	}
	if !fi.Mode().IsRegular() {
		return 0, ErrNotFound
	}
	return fi.Size(), nil
}

// Get opens the object at key. The reader is an *os.File, so it can seek.
func (f *Filesystem) Get(ctx context.Context, key string) (io.ReadCloser, int64, error) {
	p, err := f.path(key)
	if err != nil {
		return nil, 0, err
	}
	file, err := os.Open(p)
	if err != nil {
		return nil, 0, notFound(err)
	}
	fi, err := file.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		file.Close()
		return nil, 0, ErrNotFound
	}
	return file, fi.Size(), nil
}

// Put writes a small object, replacing any previous one atomically.
func (f *Filesystem) Put(ctx context.Context, key string, data []byte) error {
	p, err := f.path(key)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(f.tmp, "put-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}

// Create starts a streamed write to key.
func (f *Filesystem) Create(ctx context.Context, key string) (Upload, error) {
	p, err := f.path(key)
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(f.tmp, "upload-*")
	if err != nil {
		return nil, err
	}
	return &FileUpload{file: tmp, dst: p}, nil
}

// FileUpload is a write in progress to a temporary file.
type FileUpload struct {
	file *os.File
	dst  string
}

func (u *FileUpload) Write(p []byte) (int, error) { return u.file.Write(p) }

// ReadFrom lets io.Copy use the file's own fast paths.
func (u *FileUpload) ReadFrom(r io.Reader) (int64, error) { return u.file.ReadFrom(r) }

// Commit publishes the file unless an object already exists at the key.
func (u *FileUpload) Commit(ctx context.Context) error {
	defer os.Remove(u.file.Name())
	if err := u.file.Sync(); err != nil {
		u.file.Close()
		return err
	}
	if err := u.file.Close(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(u.dst), 0o755); err != nil {
		return err
	}
	// link(2) fails if the destination exists: a conditional publish.
	if err := os.Link(u.file.Name(), u.dst); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return ErrExists
		}
		return err
	}
	return nil
}

// Abort discards the write.
func (u *FileUpload) Abort(ctx context.Context) error {
	u.file.Close()
	return os.Remove(u.file.Name())
}

// PutIfAbsent writes a small object unless one exists at key, and returns
// its version (a hash of the content).
func (f *Filesystem) PutIfAbsent(ctx context.Context, key string, data []byte) (string, error) {
	up, err := f.Create(ctx, key)
	if err != nil {
		return "", err
	}
	if _, err := up.Write(data); err != nil {
		up.Abort(ctx)
		return "", err
	}
	if err := up.Commit(ctx); err != nil {
		return "", err
	}
	return versionOf(data), nil
}

// ReadVersion returns a small object and its version.
func (f *Filesystem) ReadVersion(ctx context.Context, key string) ([]byte, string, error) {
	p, err := f.path(key)
	if err != nil {
		return nil, "", err
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, "", notFound(err)
	}
	return data, versionOf(data), nil
}

// ReplaceIf overwrites the object at key only if its version is still
// version. The check and the write are atomic within this process only:
// the filesystem store is for one local server.
func (f *Filesystem) ReplaceIf(ctx context.Context, key string, data []byte, version string) (string, error) {
	f.casMu.Lock()
	defer f.casMu.Unlock()
	if err := f.checkVersion(ctx, key, version); err != nil {
		return "", err
	}
	if err := f.Put(ctx, key, data); err != nil {
		return "", err
	}
	return versionOf(data), nil
}

// DeleteIf removes the object at key only if its version is still version
// (atomic within this process, like ReplaceIf).
func (f *Filesystem) DeleteIf(ctx context.Context, key, version string) error {
	f.casMu.Lock()
	defer f.casMu.Unlock()
	if err := f.checkVersion(ctx, key, version); err != nil {
		return err
	}
	p, _ := f.path(key)
	return notFound(os.Remove(p))
}

func (f *Filesystem) checkVersion(ctx context.Context, key, version string) error {
	_, cur, err := f.ReadVersion(ctx, key)
	if err != nil {
		return err
	}
	if cur != version {
		return ErrExists
	}
	return nil
}

// versionOf names a small object's content; lease records carry a random
// owner, so two writes never share one.
func versionOf(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:16])
}
