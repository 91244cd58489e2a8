package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/pullthrough/pullthrough/internal/field"
)

// s3API lists the only S3 calls the store makes; the IAM policy in
// infra/terraform grants exactly the actions behind them.
type s3API interface {
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, opts ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error)
	UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error)
	CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error)
	AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, opts ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, opts ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
	// ListObjectsV2 is used only by the sweep (list.go).
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
}

type presignAPI interface {
	PresignGetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.PresignOptions)) (*v4.PresignedHTTPRequest, error)
	PresignHeadObject(ctx context.Context, in *s3.HeadObjectInput, opts ...func(*s3.PresignOptions)) (*v4.PresignedHTTPRequest, error)
}

// DefaultPartSize is the multipart part size: above S3's 5 MiB minimum, and
// small enough that a fill holds little memory.
const DefaultPartSize = 8 << 20

// DefaultUploadConcurrency is how many parts of one object are uploaded at
// once: enough to keep S3 busy while the upstream streams, 5 parts of
// memory in all.
const DefaultUploadConcurrency = 4

// Bounds of UploadTuning. S3 takes multipart parts of 5 MiB to 5 GiB (the
// last part may be smaller); see the S3 user guide, "Amazon S3 multipart
// upload limits".
const (
	MinPartSize          = 5 << 20
	MaxPartSize          = 5 << 30
	MaxUploadConcurrency = 64
)

// UploadTuning sets how the S3 store uploads a large object: in parts of
// PartSize bytes, Concurrency of them at once. A fill holds about
// (Concurrency+1) × PartSize bytes of memory.
type UploadTuning struct {
	PartSize    int
	Concurrency int
}

// Validate reports each field that breaks a rule as joined *field.Error
// values: PartSize within S3's part limits, Concurrency 1 to
// MaxUploadConcurrency.
func (t UploadTuning) Validate() error {
	var errs []error
	if t.PartSize < MinPartSize || t.PartSize > MaxPartSize {
		errs = append(errs, field.Errorf("PartSize", t.PartSize, "want %s to %s, got %s", field.Size(MinPartSize), field.Size(MaxPartSize), field.Size(int64(t.PartSize))))
	}
	if t.Concurrency < 1 || t.Concurrency > MaxUploadConcurrency {
		errs = append(errs, field.Errorf("Concurrency", t.Concurrency, "want 1 to %d, got %d", MaxUploadConcurrency, t.Concurrency))
	}
	return errors.Join(errs...)
}

// partTimeout bounds the upload of one part.
const partTimeout = 2 * time.Minute

// S3 stores objects in one bucket under an optional prefix.
type S3 struct {
	client      s3API
	presign     presignAPI
	bucket      string
	prefix      string
	partSize    int
	concurrency int
	bufs        sync.Pool // *[]byte of partSize
}

// NewS3 wraps an SDK client. prefix may be empty.
func NewS3(client *s3.Client, bucket, prefix string) *S3 {
	return &S3{
		client:      client,
		presign:     s3.NewPresignClient(client),
		bucket:      bucket,
		prefix:      prefix,
		partSize:    DefaultPartSize,
		concurrency: DefaultUploadConcurrency,
	}
}

func (s *S3) key(key string) (*string, error) {
	if err := validKey(key); err != nil {
		return nil, err
	}
	if s.prefix != "" {
		key = path.Join(s.prefix, key)
	}
	return aws.String(key), nil
}

// translate maps S3 errors onto the package's sentinels.
func translate(err error) error {
	if err == nil {
		return nil
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NotFound", "NoSuchKey":
			return ErrNotFound
		case "PreconditionFailed":
			return ErrExists
		}
	}
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) {
		return ErrNotFound
	}
	return err
}

// Stat returns the size of the object at key (one HeadObject).
func (s *S3) Stat(ctx context.Context, key string) (int64, error) {
	k, err := s.key(key)
	if err != nil {
		return 0, err
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: k})
	if err != nil {
		return 0, translate(err)
	}
	return aws.ToInt64(out.ContentLength), nil
}

// Get opens the object at key.
func (s *S3) Get(ctx context.Context, key string) (io.ReadCloser, int64, error) {
	k, err := s.key(key)
	if err != nil {
		return nil, 0, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: k})
	if err != nil {
		return nil, 0, translate(err)
	}
	return out.Body, aws.ToInt64(out.ContentLength), nil
}

// Put writes a small object, replacing any previous one.
func (s *S3) Put(ctx context.Context, key string, data []byte) error {
	_, err := s.putVersioned(ctx, key, data, &s3.PutObjectInput{})
	return err
}

// PutIfAbsent writes a small object unless one exists at key
// (If-None-Match: *) and returns its version, the ETag.
func (s *S3) PutIfAbsent(ctx context.Context, key string, data []byte) (string, error) {
	return s.putVersioned(ctx, key, data, &s3.PutObjectInput{IfNoneMatch: aws.String("*")})
}

// ReplaceIf overwrites the object at key only if its version is still
// version (If-Match), and returns the new version.
func (s *S3) ReplaceIf(ctx context.Context, key string, data []byte, version string) (string, error) {
	return s.putVersioned(ctx, key, data, &s3.PutObjectInput{IfMatch: aws.String(version)})
}

// maxSmallObject bounds what ReadVersion reads into memory (leases are a
// few dozen bytes).
const maxSmallObject = 64 << 10

// ReadVersion returns a small object and its version.
func (s *S3) ReadVersion(ctx context.Context, key string) ([]byte, string, error) {
	k, err := s.key(key)
	if err != nil {
		return nil, "", err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: k})
	if err != nil {
		return nil, "", translate(err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, maxSmallObject))
	return data, aws.ToString(out.ETag), err
}

// DeleteIf removes the object at key only if its version is still version.
func (s *S3) DeleteIf(ctx context.Context, key, version string) error {
	k, err := s.key(key)
	if err != nil {
		return err
	}
	_, err = s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: k, IfMatch: aws.String(version)})
	return translate(err)
}

func (s *S3) putVersioned(ctx context.Context, key string, data []byte, in *s3.PutObjectInput) (string, error) {
	k, err := s.key(key)
	if err != nil {
		return "", err
	}
	in.Bucket, in.Key = &s.bucket, k
	in.Body, in.ContentLength = bytes.NewReader(data), aws.Int64(int64(len(data)))
	out, err := s.client.PutObject(ctx, in)
	if err != nil {
		return "", translate(err)
	}
	return aws.ToString(out.ETag), nil
}

// PresignGet returns a URL that GETs the object at key until ttl passes
// (or the signing credentials expire, whichever is first).
func (s *S3) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error) {
	return s.presignFor(ctx, http.MethodGet, key, func(k *string) (*v4.PresignedHTTPRequest, error) {
		return s.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: k}, s3.WithPresignExpires(ttl))
	})
}

// PresignHead returns a URL that HEADs the object at key until ttl passes:
// a SigV4 signature covers the method, so a GET URL does not serve HEAD.
// S3 answers it with the object's Content-Length.
func (s *S3) PresignHead(ctx context.Context, key string, ttl time.Duration) (string, error) {
	return s.presignFor(ctx, http.MethodHead, key, func(k *string) (*v4.PresignedHTTPRequest, error) {
		return s.presign.PresignHeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: k}, s3.WithPresignExpires(ttl))
	})
}

func (s *S3) presignFor(ctx context.Context, method, key string, sign func(k *string) (*v4.PresignedHTTPRequest, error)) (string, error) {
	k, err := s.key(key)
	if err != nil {
		return "", err
	}
	req, err := sign(k)
	if err != nil {
		return "", err
	}
	if req.Method != method {
		return "", fmt.Errorf("store: presigned %s, want %s", req.Method, method)
	}
	return req.URL, nil
}

// Create starts a streamed write. Parts are uploaded as they fill, up to
// the upload concurrency at once, so memory stays at most (concurrency+1)
// parts whatever the object size.
func (s *S3) Create(ctx context.Context, key string) (Upload, error) {
	k, err := s.key(key)
	if err != nil {
		return nil, err
	}
	return &s3Upload{
		s:     s,
		key:   k,
		buf:   s.getBuf(),
		slots: make(chan struct{}, s.concurrency),
	}, nil
}

// getBuf and putBuf recycle part buffers across uploads, so concurrent and
// successive fills reuse memory instead of growing the heap.
func (s *S3) getBuf() []byte {
	if b, ok := s.bufs.Get().(*[]byte); ok && cap(*b) == s.partSize {
		return (*b)[:0]
	}
	return make([]byte, 0, s.partSize)
}

func (s *S3) putBuf(b []byte) {
	if cap(b) == s.partSize {
		s.bufs.Put(&b)
	}
}

// SetUploadTuning replaces the upload tuning after checking it
// (UploadTuning.Validate).
func (s *S3) SetUploadTuning(t UploadTuning) error {
	if err := t.Validate(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	s.partSize, s.concurrency = t.PartSize, t.Concurrency
	return nil
}

type s3Upload struct {
	s     *S3
	key   *string
	buf   []byte        // the part being filled
	id    *string       // multipart upload id, once started
	next  int32         // parts started so far
	slots chan struct{} // one per part in flight
	wg    sync.WaitGroup

	mu    sync.Mutex
	parts []types.CompletedPart
	err   error // the first failure of any part
}

func (u *s3Upload) failed() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

func (u *s3Upload) Write(p []byte) (int, error) {
	if err := u.failed(); err != nil {
		return 0, err
	}
	n := 0
	for len(p) > 0 {
		take := min(cap(u.buf)-len(u.buf), len(p))
		u.buf = append(u.buf, p[:take]...)
		p, n = p[take:], n+take
		if len(u.buf) == cap(u.buf) {
			if err := u.startPart(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// startPart uploads the filled buffer in the background (waiting for a free
// slot first) and gives Write an empty one.
func (u *s3Upload) startPart() error {
	// io.Writer has no context, so each call gets its own deadline;
	// Commit and Abort take the caller's.
	if u.id == nil {
		ctx, cancel := context.WithTimeout(context.Background(), partTimeout)
		out, err := u.s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &u.s.bucket, Key: u.key})
		cancel()
		if err != nil {
			return u.fail(fmt.Errorf("store: create multipart upload: %w", err))
		}
		u.id = out.UploadId
	}
	u.slots <- struct{}{}
	if err := u.failed(); err != nil {
		<-u.slots
		return err
	}
	u.next++
	num, body := u.next, u.buf
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		defer func() { <-u.slots }()
		ctx, cancel := context.WithTimeout(context.Background(), partTimeout)
		defer cancel()
		out, err := u.s.client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket:        &u.s.bucket,
			Key:           u.key,
			UploadId:      u.id,
			PartNumber:    aws.Int32(num),
			Body:          bytes.NewReader(body),
			ContentLength: aws.Int64(int64(len(body))),
		})
		if err != nil {
			u.fail(fmt.Errorf("store: upload part %d: %w", num, err))
			return
		}
		u.mu.Lock()
		u.parts = append(u.parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(num)})
		u.mu.Unlock()
		u.s.putBuf(body)
	}()
	u.buf = u.s.getBuf()
	return nil
}

// ReadFrom fills part buffers straight from r (io.Copy uses it), saving a
// copy of every byte compared with Write.
func (u *s3Upload) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		if err := u.failed(); err != nil {
			return total, err
		}
		n, err := r.Read(u.buf[len(u.buf):cap(u.buf)])
		u.buf = u.buf[:len(u.buf)+n]
		total += int64(n)
		if len(u.buf) == cap(u.buf) {
			if serr := u.startPart(); serr != nil {
				return total, serr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

func (u *s3Upload) fail(err error) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.err == nil {
		u.err = err
	}
	return u.err
}

// Commit publishes the object with If-None-Match: *, so of two writers of
// the same key exactly one wins and the loser gets ErrExists.
func (u *s3Upload) Commit(ctx context.Context) error {
	defer u.release()
	if u.id == nil {
		_, err := u.s.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &u.s.bucket, Key: u.key, Body: bytes.NewReader(u.buf),
			ContentLength: aws.Int64(int64(len(u.buf))), IfNoneMatch: aws.String("*"),
		})
		return translate(err)
	}
	if len(u.buf) > 0 {
		if err := u.startPart(); err != nil {
			u.wg.Wait()
			return err
		}
	}
	u.wg.Wait()
	if err := u.failed(); err != nil {
		return err
	}
	sort.Slice(u.parts, func(i, j int) bool { return *u.parts[i].PartNumber < *u.parts[j].PartNumber })
	_, err := u.s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          &u.s.bucket,
		Key:             u.key,
		UploadId:        u.id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: u.parts},
		IfNoneMatch:     aws.String("*"),
	})
	if err != nil {
		err = translate(err)
		if errors.Is(err, ErrExists) {
			u.abort(ctx)
		}
		return err
	}
	return nil
}

// Abort discards the write and any uploaded parts, after the parts in
// flight have finished (nothing may outlive the request).
func (u *s3Upload) Abort(ctx context.Context) error {
	u.wg.Wait()
	u.release()
	return u.abort(ctx)
}

// release hands the part being filled back to the pool once no part is
// in flight.
func (u *s3Upload) release() {
	u.wg.Wait()
	if u.buf != nil {
		u.s.putBuf(u.buf)
		u.buf = nil
	}
}

func (u *s3Upload) abort(ctx context.Context) error {
	if u.id == nil {
		return nil
	}
	_, err := u.s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &u.s.bucket, Key: u.key, UploadId: u.id})
	u.id = nil
	return err
}
