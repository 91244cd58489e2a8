package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/store"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

const (
	// plainPartSize is the plain copy's multipart part size, the same as
	// the mirror's default.
	plainPartSize = store.DefaultPartSize
	fillTimeout   = 10 * time.Minute
	// memorySlack is how much more a 1 GiB fill may hold than a 10 MiB one:
	// 64 MiB, plus the parallel ranged fill's part buffers, which a blob
	// over two parts holds whatever its size and the 10 MiB one does not
	// (proxy.DefaultFillParts × proxy.DefaultFillPartSize).
	memorySlack = 64<<20 + proxy.DefaultFillParts*proxy.DefaultFillPartSize
)

type fillRun struct {
	Plain time.Duration `json:"plainNs"`
	// PlainParallel is the plain copy with as many parts in flight as the
	// mirror's store uploads at once by default.
	PlainParallel time.Duration `json:"plainParallelNs"`
	// PlainVerified is PlainParallel that also hashes the bytes with
	// SHA-256 and checks the digest before completing the upload, the one
	// thing a mirror must do that a plain copy does not.
	PlainVerified time.Duration `json:"plainVerifiedNs"`
	// Mirror is the mirror's fill: a cold blob GET until the blob is in
	// S3. MirrorClient is the same GET until the client's last byte,
	// which the mirror sends once the bytes are verified, before the
	// publish.
	Mirror       time.Duration `json:"mirrorNs"`
	MirrorClient time.Duration `json:"mirrorClientNs"`
	PeakRSSBig   int64         `json:"peakRssBigBytes"`
	PeakRSSmall  int64         `json:"peakRssSmallBytes"`
	// CPU time (user + system) spent during the big fill by the mirror
	// process and by versitygw, and by versitygw during the plain copy.
	MirrorCPU   time.Duration `json:"mirrorCpuNs"`
	MirrorS3CPU time.Duration `json:"mirrorS3CpuNs"`
	PlainS3CPU  time.Duration `json:"plainS3CpuNs"`
}

type fillResult struct {
	BigBlob   int64     `json:"bigBlobBytes"`
	SmallBlob int64     `json:"smallBlobBytes"`
	Runs      []fillRun `json:"runs"`
}

// measureFill compares the mirror's cold fill of one big blob (the time to
// its 307, which it sends once the blob is verified and in S3) with a plain
// copy of the same bytes, and records the mirror's peak RSS when filling
// the big blob and a 10 MiB one, each in a fresh process. Both copies read
// through the same upstream wrapper and write to the same S3 server.
func measureFill(ctx context.Context, t *testing.T, e *benchEnv) fillResult {
	t.Helper()
	res := fillResult{BigBlob: e.p.BigBlob, SmallBlob: e.p.SmallBlob}
	client := e.s3.Client()
	for run := range e.p.Runs {
		var r fillRun
		src := e.up.URL.String() + "/v2/" + bigRepo + "/blobs/" + e.bigDigest
		key := fmt.Sprintf("bench/plain-%d/blob", run)
		s3Before := cpuTime(t, e.s3.Proc)
		d, err := plainCopy(ctx, client, e.s3.Bucket, key, src, 1, "")
		if err != nil {
			t.Fatalf("plain copy run %d: %v", run, err)
		}
		r.Plain = d
		r.PlainS3CPU = cpuTime(t, e.s3.Proc) - s3Before
		deleteObject(ctx, t, client, e.s3.Bucket, key)
		if r.PlainParallel, err = plainCopy(ctx, client, e.s3.Bucket, key, src, store.DefaultUploadConcurrency+1, ""); err != nil {
			t.Fatalf("plain copy (%d parts in flight) run %d: %v", store.DefaultUploadConcurrency, run, err)
		}
		deleteObject(ctx, t, client, e.s3.Bucket, key)
		if r.PlainVerified, err = plainCopy(ctx, client, e.s3.Bucket, key, src, store.DefaultUploadConcurrency+1, e.bigDigest); err != nil {
			t.Fatalf("verifying plain copy run %d: %v", run, err)
		}
		deleteObject(ctx, t, client, e.s3.Bucket, key)

		big := e.mirrorFill(ctx, t, fmt.Sprintf("bench/fill-big-%d", run), bigRepo, e.bigDigest)
		small := e.mirrorFill(ctx, t, fmt.Sprintf("bench/fill-small-%d", run), smallRep, e.smallDigest)
		r.Mirror, r.MirrorClient, r.PeakRSSBig, r.MirrorCPU, r.MirrorS3CPU = big.published, big.took, big.peakRSS, big.cpu, big.s3CPU
		r.PeakRSSmall = small.peakRSS
		t.Logf("fill         run %d: plain %5.2fs, plain ×%d %5.2fs, verifying %5.2fs, mirror %5.2fs; peak RSS %s (%s blob) vs %s (%s blob)",
			run+1, r.Plain.Seconds(), store.DefaultUploadConcurrency, r.PlainParallel.Seconds(), r.PlainVerified.Seconds(), r.Mirror.Seconds(), mibString(r.PeakRSSBig), mibString(e.p.BigBlob), mibString(r.PeakRSSmall), mibString(e.p.SmallBlob))
		res.Runs = append(res.Runs, r)
	}
	return res
}

// fillStats are one mirror fill: took is the GET until the client's last
// byte, published until the blob is in S3 (polled every 10 ms).
type fillStats struct {
	took, published, cpu, s3CPU time.Duration
	peakRSS                     int64
}

// mirrorFill starts a fresh local mirror on an empty prefix (env added to
// its environment), asks it for one blob and times the answer to its last
// byte and the blob's arrival in S3, then reads the process's peak RSS and
// deletes the stored blob again (a 1 GiB object per run adds up).
func (e *benchEnv) mirrorFill(ctx context.Context, t *testing.T, prefix, repo, dgst string, env ...string) fillStats {
	t.Helper()
	base, p := testenv.StartMirror(t, e.local, append(e.mirrorEnv(e.s3.Endpoint, prefix), env...)...)
	defer p.Kill()
	ctx, cancel := context.WithTimeout(ctx, fillTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/"+repo+"/blobs/"+dgst, nil)
	if err != nil {
		t.Fatal(err)
	}
	cpu0, s3CPU0 := cpuTime(t, p), cpuTime(t, e.s3.Proc)
	start := time.Now()
	resp, err := testenv.NoRedirect.Do(req)
	if err != nil {
		t.Fatalf("mirror fill %s: %v\n%s", repo, err, tail(p.Output(), 30))
	}
	h := sha256.New()
	_, rerr := io.Copy(h, resp.Body)
	resp.Body.Close()
	st := fillStats{took: time.Since(start)}
	key := prefix + "/blobs/sha256/" + strings.TrimPrefix(dgst, "sha256:")
	for client := e.s3.Client(); ; time.Sleep(10 * time.Millisecond) {
		if _, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &e.s3.Bucket, Key: &key}); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("mirror fill %s: not in S3 within %s\n%s", repo, fillTimeout, tail(p.Output(), 30))
		}
	}
	st.published = time.Since(start)
	st.cpu, st.s3CPU = cpuTime(t, p)-cpu0, cpuTime(t, e.s3.Proc)-s3CPU0
	// The mirror streams a cold blob while it fills it and sends the last
	// byte once the blob is verified and in S3 (or, filled by then, a 307
	// to S3). A 307 elsewhere (the upstream's own blob URL) would mean no
	// fill was timed.
	switch loc := resp.Header.Get("Location"); {
	case resp.StatusCode == http.StatusOK:
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); rerr != nil || got != dgst {
			t.Fatalf("mirror fill %s: streamed body hashes to %s (read error %v), want %s", repo, got, rerr, dgst)
		}
	case resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(loc, e.s3.Endpoint+"/"):
		t.Fatalf("mirror fill %s: got %d to %.40q, want a streamed 200 or a 307 to the S3 server\n%s", repo, resp.StatusCode, loc, tail(p.Output(), 30))
	}
	if st.peakRSS, err = peakRSS(p); err != nil {
		t.Fatal(err)
	}
	deleteObject(ctx, t, e.s3.Client(), e.s3.Bucket, key)
	return st
}

// plainCopy is the baseline a fill is compared with: GET the blob and
// stream it into an S3 multipart upload in 8 MiB parts with the same SDK
// the mirror uses. With buffers = 1 it reads a part, uploads it, then reads
// the next; with n, up to n-1 parts upload while the next is read, as the
// mirror's store does with n-1 = its upload concurrency. With verify empty
// it neither hashes nor verifies anything; otherwise it hashes the bytes as
// they are read and completes the upload only if they match.
func plainCopy(ctx context.Context, client *s3.Client, bucket, key, src string, buffers int, verify string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, fillTimeout)
	defer cancel()
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", src, resp.Status)
	}
	body := io.Reader(resp.Body)
	h := sha256.New()
	if verify != "" {
		body = io.TeeReader(body, h)
	}
	up, err := client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return 0, err
	}
	abort := func(err error) (time.Duration, error) {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: &bucket, Key: &key, UploadId: up.UploadId})
		return 0, err
	}

	var (
		mu    sync.Mutex
		parts []types.CompletedPart
		errs  []error
		wg    sync.WaitGroup
	)
	bufs := make(chan []byte, buffers)
	for range buffers {
		bufs <- make([]byte, plainPartSize)
	}
	for num := int32(1); ; num++ {
		buf := <-bufs // waits while every buffer is uploading
		n, rerr := io.ReadFull(body, buf)
		if n > 0 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { bufs <- buf }()
				out, err := client.UploadPart(ctx, &s3.UploadPartInput{
					Bucket: &bucket, Key: &key, UploadId: up.UploadId, PartNumber: aws.Int32(num),
					Body: bytes.NewReader(buf[:n]), ContentLength: aws.Int64(int64(n)),
				})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(num)})
			}()
		} else {
			bufs <- buf
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			wg.Wait()
			return abort(rerr)
		}
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return abort(err)
	}
	if verify != "" {
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != verify {
			return abort(fmt.Errorf("copied bytes hash to %s, want %s", got, verify))
		}
	}
	slices.SortFunc(parts, func(a, b types.CompletedPart) int { return int(*a.PartNumber - *b.PartNumber) })
	if _, err := client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &bucket, Key: &key, UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}); err != nil {
		return abort(err)
	}
	return time.Since(start), nil
}

func deleteObject(ctx context.Context, t *testing.T, client *s3.Client, bucket, key string) {
	t.Helper()
	if _, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: &key}); err != nil {
		t.Errorf("delete %s: %v", key, err)
	}
}
