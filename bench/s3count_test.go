package bench

import (
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// s3Counter is a reverse proxy in front of the S3 server that counts what
// passes through it, by S3 operation. It keeps the Host header, so SigV4
// signatures (the mirror's own and those in presigned URLs it hands out)
// still verify at the server.
type s3Counter struct {
	URL string

	mu    sync.Mutex
	ops   map[string]int
	total int // never reset, for settle
}

func newS3Counter(t *testing.T, target string) *s3Counter {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	c := &s3Counter{ops: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	rp.ErrorLog = log.New(io.Discard, "", 0)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	rp.Transport = tr
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := s3Op(r)
		c.mu.Lock()
		c.ops[op]++
		c.total++
		c.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		srv.Close()
		tr.CloseIdleConnections()
	})
	c.URL = srv.URL
	return c
}

// Reset zeroes the counts and returns what they were.
func (c *s3Counter) Reset() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.ops
	c.ops = map[string]int{}
	return old
}

// settle waits until no request has passed for idle, or max has passed:
// a mirror may still be writing to S3 after its client got the last byte
// (distribution commits a proxied blob after streaming it), and that work
// belongs to the pull that caused it, not to the next one.
func (c *s3Counter) settle(idle, max time.Duration) {
	count := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.total
	}
	deadline := time.Now().Add(max)
	last, quietSince := count(), time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		if n := count(); n != last {
			last, quietSince = n, time.Now()
		} else if time.Since(quietSince) >= idle {
			return
		}
	}
}

// presignedPrefix marks requests made with a presigned URL: the client
// following a redirect, not the mirror.
const presignedPrefix = "presigned "

// apiCalls sums the operations the mirror itself made.
func apiCalls(ops map[string]int) int {
	n := 0
	for op, c := range ops {
		if !strings.HasPrefix(op, presignedPrefix) {
			n += c
		}
	}
	return n
}

func presignedCalls(ops map[string]int) int {
	n := 0
	for op, c := range ops {
		if strings.HasPrefix(op, presignedPrefix) {
			n += c
		}
	}
	return n
}

// opSummary renders counts as "HeadObject×10, GetObject×1", mirror calls
// first, sorted by name.
func opSummary(ops map[string]int) string {
	var parts []string
	for _, op := range slices.Sorted(maps.Keys(ops)) {
		if !strings.HasPrefix(op, presignedPrefix) {
			parts = append(parts, op+"×"+strconv.Itoa(ops[op]))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// s3Op names the S3 operation of a path-style request.
func s3Op(r *http.Request) string {
	q := r.URL.Query()
	if q.Has("X-Amz-Signature") {
		return presignedPrefix + r.Method
	}
	bucketOnly := strings.Count(strings.Trim(r.URL.Path, "/"), "/") == 0
	copySrc := r.Header.Get("X-Amz-Copy-Source") != ""
	switch r.Method {
	case http.MethodHead:
		if bucketOnly {
			return "HeadBucket"
		}
		return "HeadObject"
	case http.MethodGet:
		switch {
		case q.Has("uploadId"):
			return "ListParts"
		case q.Has("uploads"):
			return "ListMultipartUploads"
		case bucketOnly:
			return "ListObjects"
		}
		return "GetObject"
	case http.MethodPut:
		switch {
		case q.Has("partNumber") && copySrc:
			return "UploadPartCopy"
		case q.Has("partNumber"):
			return "UploadPart"
		case copySrc:
			return "CopyObject"
		case bucketOnly:
			return "CreateBucket"
		}
		return "PutObject"
	case http.MethodPost:
		switch {
		case q.Has("uploads"):
			return "CreateMultipartUpload"
		case q.Has("uploadId"):
			return "CompleteMultipartUpload"
		case q.Has("delete"):
			return "DeleteObjects"
		}
	case http.MethodDelete:
		if q.Has("uploadId") {
			return "AbortMultipartUpload"
		}
		return "DeleteObject"
	}
	return r.Method + " other"
}
