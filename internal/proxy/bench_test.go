package proxy_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

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

func serveBench(b *testing.B, h http.Handler, method, path string, want int) {
	b.ReportAllocs()
	req := httptest.NewRequest(method, path, nil)
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			b.Fatalf("got %d, want %d", rec.Code, want)
		}
	}
}

// S3 hits: a HEAD or a GET (a presigned redirect) costs one HeadObject, so
// that a blob deleted from the bucket is noticed (blob.go).
func BenchmarkBlobHitS3(b *testing.B) {
	srv := testenv.StartS3(b)
	h, blob, _ := benchProxy(b, store.NewS3(srv.Client(), srv.Bucket, "bench"))
	b.Run("HEAD", func(b *testing.B) { serveBench(b, h, http.MethodHead, blob, http.StatusOK) })
	b.Run("GET", func(b *testing.B) { serveBench(b, h, http.MethodGet, blob, http.StatusTemporaryRedirect) })
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
