package store_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/store"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// Both stores satisfy what the proxy asks for.
var (
	_ proxy.Store     = (*store.Filesystem)(nil)
	_ proxy.Store     = (*store.S3)(nil)
	_ proxy.Presigner = (*store.S3)(nil)
	_ proxy.Leaser    = (*store.S3)(nil)
	_ proxy.Leaser    = (*store.Filesystem)(nil)
)

func TestFilesystem(t *testing.T) {
	conformance(t, func(t *testing.T) proxy.Store {
		fsys, err := store.NewFilesystem(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return fsys
	}, nil)
}

func TestS3(t *testing.T) {
	srv := testenv.StartS3(t)
	n := 0
	conformance(t, func(t *testing.T) proxy.Store {
		n++ // a fresh prefix per subtest keeps them independent
		return store.NewS3(srv.Client(), srv.Bucket, "conformance/"+strings.Repeat("x", n))
	}, srv)
}

// conformance is the one behaviour suite every store passes.
func conformance(t *testing.T, open func(*testing.T) proxy.Store, srv *testenv.S3Server) {
	ctx := context.Background()
	listConformance(t, open)

	t.Run("missing object is ErrNotExist", func(t *testing.T) {
		st := open(t)
		if _, err := st.Stat(ctx, "blobs/sha256/none"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat: got %v, want ErrNotExist", err)
		}
		if _, _, err := st.Get(ctx, "blobs/sha256/none"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Get: got %v, want ErrNotExist", err)
		}
	})

	t.Run("put get replace", func(t *testing.T) {
		st := open(t)
		for _, v := range []string{"first", "second, longer"} {
			if err := st.Put(ctx, "tags/docker.io/library/alpine/_tag/latest", []byte(v)); err != nil {
				t.Fatal(err)
			}
			rc, n, err := st.Get(ctx, "tags/docker.io/library/alpine/_tag/latest")
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if string(got) != v || n != int64(len(v)) {
				t.Errorf("got %q (%d), want %q", got, n, v)
			}
		}
	})

	t.Run("streamed write is invisible until commit", func(t *testing.T) {
		st := open(t)
		// Several S3 parts, uploaded concurrently and out of order.
		data := make([]byte, 4*store.DefaultPartSize+3<<20)
		for i := range data {
			data[i] = byte(i / 4093)
		}
		up, err := st.Create(ctx, "blobs/sha256/big")
		if err != nil {
			t.Fatal(err)
		}
		for chunk := data; len(chunk) > 0; {
			n := min(len(chunk), 1<<20)
			if _, err := up.Write(chunk[:n]); err != nil {
				t.Fatal(err)
			}
			chunk = chunk[n:]
		}
		if _, err := st.Stat(ctx, "blobs/sha256/big"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("before commit: got %v, want ErrNotExist", err)
		}
		if err := up.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		size, err := st.Stat(ctx, "blobs/sha256/big")
		if err != nil || size != int64(len(data)) {
			t.Fatalf("after commit: got %d, %v; want %d", size, err, len(data))
		}
		rc, _, err := st.Get(ctx, "blobs/sha256/big")
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		h := sha256.New()
		io.Copy(h, rc)
		if !bytes.Equal(h.Sum(nil), sha256Sum(data)) {
			t.Errorf("content differs after commit")
		}
	})

	t.Run("abort leaves nothing", func(t *testing.T) {
		st := open(t)
		up, err := st.Create(ctx, "blobs/sha256/aborted")
		if err != nil {
			t.Fatal(err)
		}
		up.Write(bytes.Repeat([]byte{1}, store.DefaultPartSize+1))
		if err := up.Abort(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Stat(ctx, "blobs/sha256/aborted"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("got %v, want ErrNotExist", err)
		}
		if srv != nil {
			if n := srv.PendingUploads(t); n != 0 {
				t.Errorf("got %d pending multipart uploads after abort, want 0", n)
			}
		}
	})

	t.Run("commit never replaces an existing object", func(t *testing.T) {
		st := open(t)
		for _, size := range []int{10, store.DefaultPartSize + 10} {
			key := "blobs/sha256/race" + strings.Repeat("x", size%7)
			first, _ := st.Create(ctx, key)
			second, _ := st.Create(ctx, key)
			first.Write(bytes.Repeat([]byte("a"), size))
			second.Write(bytes.Repeat([]byte("b"), size))
			if err := first.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if err := second.Commit(ctx); !errors.Is(err, fs.ErrExist) {
				t.Errorf("size %d: second commit got %v, want ErrExist", size, err)
			}
			rc, _, _ := st.Get(ctx, key)
			got, _ := io.ReadAll(rc)
			rc.Close()
			if len(got) == 0 || got[0] != 'a' {
				t.Errorf("size %d: the losing writer replaced the object", size)
			}
		}
	})

	t.Run("concurrent commits publish exactly once", func(t *testing.T) {
		st := open(t)
		const n = 5
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				up, err := st.Create(ctx, "blobs/sha256/contended")
				if err != nil {
					errs[i] = err
					return
				}
				up.Write([]byte("same bytes"))
				errs[i] = up.Commit(ctx)
			}()
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, fs.ErrExist):
				t.Errorf("unexpected error %v", err)
			}
		}
		if won != 1 {
			t.Errorf("got %d winning commits, want 1", won)
		}
	})

	t.Run("conditional writes and deletes", func(t *testing.T) {
		st := open(t)
		l := st.(proxy.Leaser)
		const key = "leases/blobs/sha256/x"
		v1, err := l.PutIfAbsent(ctx, key, []byte("one"))
		if err != nil || v1 == "" {
			t.Fatalf("PutIfAbsent: version %q, %v", v1, err)
		}
		if _, err := l.PutIfAbsent(ctx, key, []byte("two")); !errors.Is(err, fs.ErrExist) {
			t.Errorf("second PutIfAbsent: got %v, want ErrExist", err)
		}
		data, v, err := l.ReadVersion(ctx, key)
		if err != nil || string(data) != "one" || v != v1 {
			t.Errorf("ReadVersion: %q %q %v, want the first writer's content at %q", data, v, err, v1)
		}
		v2, err := l.ReplaceIf(ctx, key, []byte("three"), v1)
		if err != nil || v2 == v1 {
			t.Fatalf("ReplaceIf at the current version: %q, %v", v2, err)
		}
		if _, err := l.ReplaceIf(ctx, key, []byte("four"), v1); !errors.Is(err, fs.ErrExist) {
			t.Errorf("ReplaceIf at a stale version: got %v, want ErrExist", err)
		}
		if err := l.DeleteIf(ctx, key, v1); !errors.Is(err, fs.ErrExist) {
			t.Errorf("DeleteIf at a stale version: got %v, want ErrExist", err)
		}
		if data, _, _ := l.ReadVersion(ctx, key); string(data) != "three" {
			t.Errorf("after failed conditions: %q, want three", data)
		}
		if err := l.DeleteIf(ctx, key, v2); err != nil {
			t.Fatalf("DeleteIf at the current version: %v", err)
		}
		if _, _, err := l.ReadVersion(ctx, key); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ReadVersion after DeleteIf: got %v, want ErrNotExist", err)
		}
		if _, err := l.ReplaceIf(ctx, key, []byte("five"), v2); err == nil {
			t.Errorf("ReplaceIf of a deleted object succeeded")
		}
		if _, err := l.PutIfAbsent(ctx, key, []byte("six")); err != nil {
			t.Errorf("PutIfAbsent after DeleteIf: %v", err)
		}
	})

	// Several writers at once, as several Lambda instances taking a lease
	// or taking over an expired one: exactly one wins each round.
	t.Run("concurrent conditional writes have one winner", func(t *testing.T) {
		st := open(t)
		l := st.(proxy.Leaser)
		race := func(round int, write func(i int) error) {
			var won atomic.Int32
			var wg sync.WaitGroup
			for i := range 6 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					// Racing conditional writes may also get a 409
					// conflict from S3: a loss, never a second win.
					if err := write(i); err == nil {
						won.Add(1)
					}
				}()
			}
			wg.Wait()
			if n := won.Load(); n != 1 {
				t.Errorf("round %d: %d writers won, want 1", round, n)
			}
		}
		for round := range 20 {
			key := fmt.Sprintf("leases/blobs/sha256/race%d", round)
			race(round, func(i int) error {
				_, err := l.PutIfAbsent(ctx, key, []byte(strconv.Itoa(i)))
				return err
			})
			_, v, err := l.ReadVersion(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			race(round, func(i int) error {
				_, err := l.ReplaceIf(ctx, key, []byte("taken by "+strconv.Itoa(i)), v)
				return err
			})
		}
	})

	t.Run("keys that escape are refused", func(t *testing.T) {
		st := open(t)
		for _, key := range []string{"", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a\\b", "a\x00b", strings.Repeat("k", 1000)} {
			if err := st.Put(ctx, key, []byte("x")); err == nil {
				t.Errorf("Put(%q) succeeded, want an error", key)
			}
			if _, err := st.Create(ctx, key); err == nil {
				t.Errorf("Create(%q) succeeded, want an error", key)
			}
		}
	})

	if srv != nil {
		t.Run("presigned URL serves the object and expires", func(t *testing.T) {
			st := open(t).(*store.S3)
			st.Put(ctx, "blobs/sha256/p", []byte("presigned bytes"))
			u, err := st.PresignGet(ctx, "blobs/sha256/p", 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if got := httpGet(t, u); got.status != 200 || got.body != "presigned bytes" {
				t.Errorf("got %d %q", got.status, got.body)
			}
			// A HEAD needs its own signature, and its answer has the length.
			hu, err := st.PresignHead(ctx, "blobs/sha256/p", 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				signedFor, url string
				wantStatus     int
				wantLength     int64
			}{
				{"HEAD", hu, http.StatusOK, int64(len("presigned bytes"))},
				{"GET", u, http.StatusForbidden, -1},
			} {
				resp, err := http.Head(tc.url)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.wantStatus || (tc.wantLength >= 0 && resp.ContentLength != tc.wantLength) {
					t.Errorf("HEAD of a URL presigned for %s: got %d length %d, want %d length %d",
						tc.signedFor, resp.StatusCode, resp.ContentLength, tc.wantStatus, tc.wantLength)
				}
			}
			time.Sleep(3 * time.Second)
			if got := httpGet(t, u); got.status != http.StatusForbidden {
				t.Errorf("expired URL: got %d, want 403", got.status)
			}
		})
	}
}

type httpResult struct {
	status int
	body   string
}

func httpGet(t *testing.T, u string) httpResult {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpResult{resp.StatusCode, string(b)}
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
