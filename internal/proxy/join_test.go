package proxy_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// While one fill of a blob is held half way, every blob GET joins it: a
// whole GET from another repository that shares the layer (harbor #22570,
// distribution PR #4664: two images on one base layer pulled at once), a
// ranged GET (containerd 2.1+ sends Range: bytes=0- and, with
// concurrent_layer_fetch_buffer, several ranges of one layer at once;
// containerd #11953). Each gets the bytes already in before the fill ends,
// and the upstream sees one GET of the blob. Before, they waited, with no
// byte sent, for the whole blob.
func TestRequestsJoinAFillInProgress(t *testing.T) {
	reg := testenv.InProcessRegistry(t)
	up := testenv.NewUpstream(t, reg)
	m := mirrorFor(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways, FillParts: 1}, proxy.UpstreamConfig{}, up)
	img := testenv.SeedImage(t, reg, "org/a:1", 1<<20, 1)
	ref, err := name.ParseReference(strings.TrimPrefix(reg.String(), "http://")+"/org/b:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, body := layerOf(t, img, 0)
	half := len(body) / 2

	// The upstream sends half of the blob, then holds the rest until
	// released: a slow upstream, frozen mid-transfer for the test.
	release := make(chan struct{})
	var held atomic.Int32
	up.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+d.String()) {
			return false
		}
		held.Add(1)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		w.Write(body[:half])
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return true
		}
		w.Write(body[half:])
		return true
	})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()

	// readSome reads the first n bytes of an answer, giving up after a
	// generous deadline: only a request left waiting for the whole blob
	// takes that long.
	type answer struct {
		status int
		first  []byte
		rest   io.ReadCloser
	}
	readSome := func(path string, hdr http.Header, n int) answer {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, m.URL+path, nil)
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan []byte, 1)
		go func() {
			b := make([]byte, n)
			k, _ := io.ReadFull(resp.Body, b)
			got <- b[:k]
		}()
		select {
		case b := <-got:
			return answer{resp.StatusCode, b, resp.Body}
		case <-time.After(20 * time.Second):
			resp.Body.Close()
			t.Fatalf("GET %s %v: no %d bytes within 20s while the fill is held (status %d)", path, hdr, n, resp.StatusCode)
			return answer{}
		}
	}

	first := readSome("/v2/org/a/blobs/"+d.String(), nil, 1024)
	other := readSome("/v2/org/b/blobs/"+d.String(), nil, 1024)
	ranged := readSome("/v2/org/a/blobs/"+d.String(), http.Header{"Range": {"bytes=100-299"}}, 200)
	from0 := readSome("/v2/org/b/blobs/"+d.String(), http.Header{"Range": {"bytes=0-"}}, 1024)
	for _, tc := range []struct {
		name   string
		a      answer
		status int
		want   []byte
	}{
		{"the first client", first, http.StatusOK, body[:1024]},
		{"another repository", other, http.StatusOK, body[:1024]},
		{"a range", ranged, http.StatusPartialContent, body[100:300]},
		{"bytes=0- from another repository", from0, http.StatusPartialContent, body[:1024]},
	} {
		if tc.a.status != tc.status || !bytes.Equal(tc.a.first, tc.want) {
			t.Errorf("%s: got %d with %d bytes, want %d with the blob's bytes", tc.name, tc.a.status, len(tc.a.first), tc.status)
		}
	}
	close(release)
	for _, a := range []answer{first, other, from0} {
		rest, err := io.ReadAll(a.rest)
		a.rest.Close()
		if err != nil || !bytes.Equal(append(a.first, rest...), body) {
			t.Errorf("after the release: got %d bytes (%v), want the whole %d-byte blob", len(a.first)+len(rest), err, len(body))
		}
	}
	ranged.rest.Close()
	waitFills(t, m.Proxy)
	if n := held.Load(); n != 1 {
		t.Errorf("got %d upstream GETs of the blob, want 1 (every request joined the fill)", n)
	}
	if _, err := m.Store.Stat(context.Background(), "blobs/sha256/"+d.Hex); err != nil {
		t.Errorf("the blob was not stored: %v", err)
	}
}
