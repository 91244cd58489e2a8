package proxy_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/store"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// benchProxy fills one image into st and returns a handler plus the paths
// of a layer and of the tag, all warm.
func benchProxy(b *testing.B, st proxy.Store) (http.Handler, string, string) {
	b.Helper()
	reg := testenv.InProcessRegistry(b)
	img := testenv.SeedImage(b, reg, "library/bench:1", 4<<10, 1)
	up, err := proxy.NewUpstream(proxy.UpstreamConfig{URL: reg.String()})
	if err != nil {
		b.Fatal(err)
	}
	h, err := proxy.New(proxy.Config{ManifestTTL: time.Hour}, st, []*proxy.Upstream{up}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	blob := "/v2/library/bench/blobs/" + ld.String()
	tag := "/v2/library/bench/manifests/1"
	for _, p := range []string{blob, tag} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		if rec.Code >= 400 {
			b.Fatalf("warm-up %s: %d %s", p, rec.Code, rec.Body)
		}
	}
	return h, blob, tag
}

// serveBench times one request over and over. Besides the wall time per
// request (which on S3 includes waiting for the store's answer) it reports
// the CPU time the process spent per request (user + system, from
// getrusage): the handler's own work, the SDK's signing and HTTP included,
// the S3 server's (another process) and the wait not.
func serveBench(b *testing.B, h http.Handler, method, path string, want int) {
	b.ReportAllocs()
	req := httptest.NewRequest(method, path, nil)
	cpu0 := processCPU(b)
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			b.Fatalf("got %d, want %d", rec.Code, want)
		}
	}
	b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/float64(b.N)/1e3, "cpu-µs/op")
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// S3 hits: a HEAD or a GET (a presigned redirect) costs one HeadObject, so
// that a blob deleted from the bucket is noticed (blob.go).
func BenchmarkBlobHitS3(b *testing.B) {
	srv := testenv.StartS3(b)
	h, blob, _ := benchProxy(b, store.NewS3(srv.Client(), srv.Bucket, "bench"))
	b.Run("HEAD", func(b *testing.B) { serveBench(b, h, http.MethodHead, blob, http.StatusOK) })
	b.Run("GET", func(b *testing.B) { serveBench(b, h, http.MethodGet, blob, http.StatusTemporaryRedirect) })
}

// A blob HEAD hit over the filesystem store: the handler's work with the
// cheapest store call there is (one stat(2)), for comparison with the S3
// store's HeadObject.
func BenchmarkBlobHeadHitFilesystem(b *testing.B) {
	fsys, err := store.NewFilesystem(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	h, blob, _ := benchProxy(b, fsys)
	serveBench(b, h, http.MethodHead, blob, http.StatusOK)
}

func BenchmarkManifestHit(b *testing.B) {
	fsys, err := store.NewFilesystem(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	h, _, tag := benchProxy(b, fsys)
	b.Run("filesystem", func(b *testing.B) { serveBench(b, h, http.MethodGet, tag, http.StatusOK) })
	srv := testenv.StartS3(b)
	h, _, tag = benchProxy(b, store.NewS3(srv.Client(), srv.Bucket, "bench"))
	b.Run("s3", func(b *testing.B) { serveBench(b, h, http.MethodGet, tag, http.StatusOK) })
}

func BenchmarkPresign(b *testing.B) {
	srv := testenv.StartS3(b)
	st := store.NewS3(srv.Client(), srv.Bucket, "bench")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := st.PresignGet(ctx, "blobs/sha256/abc", 15*time.Minute); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkColdBlob times a cold blob GET of one 4 MiB or 25 MiB layer through a
// fresh proxy over the S3 store (a new prefix each time) against the same
// GET straight from the upstream (the distribution binary), each read to
// the end and hashed by the client as a puller does. With -cpuprofile it
// shows where the mirror's own CPU goes (versitygw and the upstream are
// processes of their own).
func BenchmarkColdBlob(b *testing.B) {
	reg := testenv.DistributionRegistry(b)
	srv := testenv.StartS3(b)
	up, err := proxy.NewUpstream(proxy.UpstreamConfig{URL: reg.String()})
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []int64{4 << 20, 25 << 20} {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) { coldBlobBench(b, reg, srv, up, size) })
	}
}

func coldBlobBench(b *testing.B, reg *url.URL, srv *testenv.S3Server, up *proxy.Upstream, size int64) {
	img := testenv.SeedImage(b, reg, fmt.Sprintf("library/bench:%d", size), size, 1)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	path := "/v2/library/bench/blobs/" + ld.String()
	var ttfb time.Duration
	get := func(b *testing.B, u string) {
		began := time.Now()
		resp, err := http.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		ttfb += time.Since(began)
		defer resp.Body.Close()
		h := sha256.New()
		if _, err := io.Copy(h, resp.Body); err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("got %d, err %v", resp.StatusCode, err)
		}
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != ld.String() {
			b.Fatalf("got %s, want %s", got, ld)
		}
	}
	b.Run("direct", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			get(b, reg.String()+path)
		}
		b.ReportMetric(float64(ttfb.Microseconds())/float64(b.N), "µs-to-headers/op")
		ttfb = 0
	})
	newS3 := func(b *testing.B, i int) proxy.Store {
		return store.NewS3(srv.Client(), srv.Bucket, fmt.Sprintf("cold-%d-%d", size, i))
	}
	newFS := func(b *testing.B, i int) proxy.Store {
		st, err := store.NewFilesystem(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		return st
	}
	b.Run("mirror", func(b *testing.B) { coldMirror(b, newS3, size, up, ld, path, get, &ttfb) })
	b.Run("mirror-filesystem", func(b *testing.B) { coldMirror(b, newFS, size, up, ld, path, get, &ttfb) })
}

// coldMirror pulls one cold blob per round through a fresh mirror over
// the store newStore makes, timing the client's GET only.
func coldMirror(b *testing.B, newStore func(*testing.B, int) proxy.Store, size int64, up *proxy.Upstream, ld v1.Hash, path string, get func(*testing.B, string), ttfb *time.Duration) {
	b.SetBytes(size)
	i := 0
	for b.Loop() {
		b.StopTimer()
		i++
		st := newStore(b, i)
		h, err := proxy.New(proxy.Config{}, st, []*proxy.Upstream{up}, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		s := httptest.NewServer(h)
		b.StartTimer()
		get(b, s.URL+path)
		b.StopTimer()
		// The publish may follow the last byte: let it end before
		// the next round.
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
			if _, err := st.Stat(context.Background(), "blobs/"+ld.Algorithm+"/"+ld.Hex); err == nil {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("blob not published within a minute")
			}
		}
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(ttfb.Microseconds())/float64(b.N), "µs-to-headers/op")
	*ttfb = 0
}
