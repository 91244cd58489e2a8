package upstream

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestEncodedAnswersAreTheBytesSent: a stand-in upstream that gzips every
// answer, whatever the request's Accept-Encoding, as a misconfigured CDN or
// object store does (issue 20 class 4: 263 KiB from an upstream became 768
// MiB in the store). The client asks for identity on every request, the
// token request included, and reads what was sent: a gzip bomb stays its
// compressed size, and a gzipped manifest fails its digest check instead of
// being inflated into the bytes asked for.
func TestEncodedAnswersAreTheBytesSent(t *testing.T) {
	const inflated = 32 << 20
	var bomb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&bomb, gzip.BestCompression)
	zw.Write(make([]byte, inflated))
	zw.Close()
	manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"layers":[]}`)
	var gzManifest bytes.Buffer
	zw = gzip.NewWriter(&gzManifest)
	zw.Write(manifest)
	zw.Close()

	var mu sync.Mutex
	var asked []string
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.Path+" "+r.Header.Get("Accept-Encoding"))
		mu.Unlock()
		switch {
		case r.URL.Path == "/token":
			w.Write([]byte(`{"token":"t"}`))
			return
		case r.Header.Get("Authorization") == "":
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+srv.URL+`/token",service="s"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Encoding", "gzip")
		if strings.Contains(r.URL.Path, "/manifests/") {
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			w.Write(gzManifest.Bytes())
			return
		}
		w.Write(bomb.Bytes())
	}))
	defer srv.Close()
	c, err := New(Config{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	b, err := c.GetBlob(ctx, "org/app", digest.FromBytes(make([]byte, inflated)))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, b)
	b.Close()
	if err != nil || n != int64(bomb.Len()) {
		t.Errorf("blob: got %d bytes (%v), want the %d bytes sent, not %d inflated", n, err, bomb.Len(), inflated)
	}
	_, err = c.GetManifest(ctx, "org/app", digest.FromBytes(manifest).String(), "", 4<<20)
	if !errors.Is(err, ErrBadContent) {
		t.Errorf("gzipped manifest: got %v, want ErrBadContent (the bytes sent do not hash to the digest)", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range asked {
		if !strings.HasSuffix(a, " identity") {
			t.Errorf("got request %q, want Accept-Encoding identity", a)
		}
	}
}
