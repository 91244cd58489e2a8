package proxy_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/store"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// chunkedBlobs makes the upstream answer blob GETs without a
// Content-Length (chunked transfer encoding), as a registry serving a blob
// through a streaming proxy or CDN may: the body comes from the real
// registry behind it, flushed as it is copied so net/http cannot compute a
// length.
func chunkedBlobs(t *testing.T, up *testenv.Upstream, reg string) {
	t.Helper()
	up.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || testenv.Kind(r.URL.Path) != "blob" {
			return false
		}
		resp, err := http.Get(reg + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return true
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(resp.StatusCode)
		buf := make([]byte, 16<<10)
		for range 1 << 16 { // bounded: 1 GiB of 16 KiB reads
			n, err := resp.Body.Read(buf)
			w.Write(buf[:n])
			w.(http.Flusher).Flush()
			if err != nil {
				break
			}
		}
		return true
	})
}

// storedFiles lists every file under the filesystem store's root: blobs,
// links, leases and the unfinished uploads under .uploads.
func storedFiles(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, strings.TrimPrefix(p, root))
		}
		return nil
	})
	return files
}

func TestBlobOverSizeCapIsRefusedAndNothingStored(t *testing.T) {
	const layerSize = 256 << 10
	for _, tc := range []struct {
		name    string
		chunked bool
		cap     func(size int64) int64 // the cap for a layer of size bytes
		rng     bool                   // a Range request: not streamed, so the answer is the fill's
		want    int                    // status of a plain GET
	}{
		{name: "announced length over the cap", cap: func(n int64) int64 { return n - 1 }, want: http.StatusForbidden},
		{name: "chunked body grows past the cap", chunked: true, cap: func(n int64) int64 { return n / 4 }, rng: true, want: http.StatusForbidden},
		{name: "chunked body exactly at the cap is stored", chunked: true, cap: func(n int64) int64 { return n }, rng: true, want: http.StatusPartialContent},
		{name: "announced length at the cap is stored", cap: func(n int64) int64 { return n }, want: http.StatusOK},
		{name: "zero means no cap", chunked: true, cap: func(int64) int64 { return 0 }, rng: true, want: http.StatusPartialContent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := testenv.InProcessRegistry(t)
			img := testenv.SeedImage(t, reg, "org/big:v1", layerSize, 1)
			layers, _ := img.Layers()
			d, _ := layers[0].Digest()
			size, _ := layers[0].Size() // compressed: a little over layerSize
			m := mirrorFor(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways, MaxBlobSize: tc.cap(size)}, proxy.UpstreamConfig{}, testenv.NewUpstream(t, reg))
			if tc.chunked {
				chunkedBlobs(t, m.Up, reg.String())
			}
			h := http.Header{}
			if tc.rng {
				h.Set("Range", "bytes=0-9")
			}
			resp := do(t, http.MethodGet, m.URL+"/v2/org/big/blobs/"+d.String(), h)
			if resp.StatusCode != tc.want {
				t.Fatalf("got %d %s, want %d", resp.StatusCode, resp.body, tc.want)
			}
			if tc.want != http.StatusForbidden {
				waitStored(t, m.Store, d) // a streamed fill publishes after its last byte
				return
			}
			assertOCIError(t, resp, "DENIED")
			if !strings.Contains(string(resp.body), "size cap") {
				t.Errorf("got body %s, want it to state the size cap", resp.body)
			}
			if files := storedFiles(t, m.Store.Root()); len(files) != 0 {
				t.Errorf("got stored files %v, want none", files)
			}
		})
	}
}

// A streamed GET of a chunked blob has sent its 200 before the cap is
// reached: the transfer is cut (the client never gets a whole body) and
// nothing is stored.
func TestChunkedBlobOverSizeCapCutsTheStream(t *testing.T) {
	m, reg := newMirror(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways, MaxBlobSize: 64 << 10}, proxy.UpstreamConfig{})
	img := testenv.SeedImage(t, reg, "org/big:v1", 256<<10, 1)
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	chunkedBlobs(t, m.Up, reg.String())
	resp, err := http.Get(m.URL + "/v2/org/big/blobs/" + d.String())
	if err == nil {
		n, rerr := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && rerr == nil {
			t.Fatalf("got a whole 200 of %d bytes, want the transfer cut or a 403", n)
		}
		if n > 64<<10 {
			t.Errorf("got %d bytes, want at most the cap (64 KiB)", n)
		}
	}
	if files := storedFiles(t, m.Store.Root()); len(files) != 0 {
		t.Errorf("got stored files %v, want none", files)
	}
}

// With the S3 store a blob sent without a length that grows past the cap
// after the first 8 MiB part was uploaded leaves no object and no pending
// multipart upload: the fill aborts the upload it started.
func TestChunkedBlobOverSizeCapLeavesNoMultipartUpload(t *testing.T) {
	srv := testenv.StartS3(t)
	reg := testenv.InProcessRegistry(t)
	img := testenv.SeedImage(t, reg, "org/big:v1", 12<<20, 1)
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	up := testenv.NewUpstream(t, reg)
	chunkedBlobs(t, up, reg.String())
	u, err := proxy.NewUpstream(proxy.UpstreamConfig{URL: up.URL.String()})
	if err != nil {
		t.Fatal(err)
	}
	st := store.NewS3(srv.Client(), srv.Bucket, "cap")
	h, err := proxy.New(proxy.Config{ManifestTTL: proxy.RevalidateAlways, MaxBlobSize: 9 << 20}, st, []*proxy.Upstream{u}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)

	resp := do(t, http.MethodGet, s.URL+"/v2/org/big/blobs/"+d.String(), http.Header{"Range": {"bytes=0-9"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("got %d %s, want 403", resp.StatusCode, resp.body)
	}
	assertOCIError(t, resp, "DENIED")
	if n := srv.PendingUploads(t); n != 0 {
		t.Errorf("got %d pending multipart uploads, want 0", n)
	}
	if keys := srv.Keys(t); len(keys) != 0 {
		t.Errorf("got objects %v, want none", keys)
	}
}
