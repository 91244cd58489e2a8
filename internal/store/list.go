package store

import (
	"context"
	"errors"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// ObjectInfo describes one stored object in a listing. It is an alias of a
// struct literal so that a consumer may declare the identical type without
// importing this package.
type ObjectInfo = struct {
	Key      string    // as given to Put or Create, without the store's prefix
	Size     int64     // bytes
	Modified time.Time // when the object was last written
}

// listPage is how many keys one ListObjectsV2 call asks for (S3's maximum).
const listPage = 1000

// List yields every object whose key starts with prefix, in key order, one
// ListObjectsV2 call per 1,000 objects. An error ends the sequence.
func (s *S3) List(ctx context.Context, prefix string) iter.Seq2[ObjectInfo, error] {
	return func(yield func(ObjectInfo, error) bool) {
		full := prefix
		if s.prefix != "" {
			full = strings.TrimSuffix(s.prefix, "/") + "/" + prefix
		}
		strip := len(full) - len(prefix)
		pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
			Bucket: &s.bucket, Prefix: aws.String(full), MaxKeys: aws.Int32(listPage),
		})
		for pages.HasMorePages() {
			out, err := pages.NextPage(ctx)
			if err != nil {
				yield(ObjectInfo{}, translate(err))
				return
			}
			for _, o := range out.Contents {
				info := ObjectInfo{Key: aws.ToString(o.Key)[strip:], Size: aws.ToInt64(o.Size), Modified: aws.ToTime(o.LastModified)}
				if !yield(info, nil) {
					return
				}
			}
		}
	}
}

// Delete removes the object at key; a missing object is not an error (S3
// answers 204 either way).
func (s *S3) Delete(ctx context.Context, key string) error {
	k, err := s.key(key)
	if err != nil {
		return err
	}
	_, err = s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: k})
	return translate(err)
}

// List yields every object whose key starts with prefix. Files being
// written (under .uploads) are not objects and never listed.
func (f *Filesystem) List(ctx context.Context, prefix string) iter.Seq2[ObjectInfo, error] {
	return func(yield func(ObjectInfo, error) bool) {
		// Walk only the directory the prefix names, not the whole store.
		dir := f.root
		if i := strings.LastIndex(prefix, "/"); i >= 0 {
			dir = filepath.Join(f.root, filepath.FromSlash(prefix[:i]))
		}
		stop := errors.New("stop")
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil // removed while walking, or no such prefix yet
				}
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if d.IsDir() {
				if p == f.tmp {
					return fs.SkipDir
				}
				return nil
			}
			rel, err := filepath.Rel(f.root, p)
			if err != nil {
				return err
			}
			key := filepath.ToSlash(rel)
			if !d.Type().IsRegular() || !strings.HasPrefix(key, prefix) {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return nil // removed since the directory was read
			}
			if !yield(ObjectInfo{Key: key, Size: fi.Size(), Modified: fi.ModTime()}, nil) {
				return stop
			}
			return nil
		})
		if err != nil && !errors.Is(err, stop) {
			yield(ObjectInfo{}, err)
		}
	}
}

// Delete removes the object at key; a missing object is not an error.
func (f *Filesystem) Delete(ctx context.Context, key string) error {
	p, err := f.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
