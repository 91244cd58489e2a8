package proxy_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// cdnRegistry is a registry whose blob GETs redirect to a signed URL on
// another (TLS) host, as Docker Hub's do.
type cdnRegistry struct {
	reg      *url.URL
	upstream *httptest.Server
	cdn      *httptest.Server
	cdnGets  atomic.Int64
	blobGets atomic.Int64
}

func newCDNRegistry(t *testing.T) *cdnRegistry {
	t.Helper()
	c := &cdnRegistry{reg: testenv.InProcessRegistry(t)}
	rp := httputil.NewSingleHostReverseProxy(c.reg)
	c.cdn = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("sig") != "ok" || r.Header.Get("Authorization") != "" {
			http.Error(w, "bad signature or a forwarded credential", http.StatusForbidden)
			return
		}
		c.cdnGets.Add(1)
		r.URL.Path = strings.TrimPrefix(r.URL.Path, "/cdn")
		r.URL.RawQuery = ""
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(c.cdn.Close)
	c.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Bearer-token auth, so the mirror holds a credential the CDN
		// must never see.
		switch {
		case r.URL.Path == "/token":
			io.WriteString(w, `{"token":"upstream-token","expires_in":300}`)
			return
		case r.URL.Path != "/v2/" && r.Header.Get("Authorization") != "Bearer upstream-token":
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+c.upstream.URL+`/token",service="cdn-test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			c.blobGets.Add(1)
			http.Redirect(w, r, c.cdn.URL+"/cdn"+r.URL.Path+"?sig=ok", http.StatusTemporaryRedirect)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(c.upstream.Close)
	return c
}

func (c *cdnRegistry) mirror(t *testing.T, cfg proxy.Config) *mirror {
	t.Helper()
	return multiMirror(t, cfg, proxy.UpstreamConfig{Host: "docker.io", URL: c.upstream.URL, Transport: c.cdn.Client().Transport})
}

func layerOf(t *testing.T, img v1.Image, i int) (v1.Hash, []byte) {
	t.Helper()
	layers, _ := img.Layers()
	d, _ := layers[i].Digest()
	rc, _ := layers[i].Compressed()
	b, _ := io.ReadAll(rc)
	return d, b
}

func TestLargeBlobRedirectsToUpstreamCDNAndFillsBehind(t *testing.T) {
	c := newCDNRegistry(t)
	m := c.mirror(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways, LargeBlobPolicy: proxy.PolicyAuto, LargeBlobSize: 256 << 10})
	img := testenv.SeedImage(t, c.reg, "library/cuda:1", 1<<20, 2)
	small := testenv.SeedImage(t, c.reg, "library/small:1", 8<<10, 1)

	// A small blob is filled and served by the mirror; the mirror learns
	// that this upstream has a CDN.
	sd, sbody := layerOf(t, small, 0)
	resp := do(t, http.MethodGet, m.URL+"/v2/library/small/blobs/"+sd.String(), nil)
	if resp.StatusCode != 200 || string(resp.body) != string(sbody) {
		t.Fatalf("small blob: got %d, want 200 with the layer", resp.StatusCode)
	}

	d, body := layerOf(t, img, 0)
	noFollow := &http.Client{Transport: c.cdn.Client().Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	r, err := noFollow.Get(m.URL + "/v2/library/cuda/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	loc := r.Header.Get("Location")
	if r.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(loc, c.cdn.URL) || r.Header.Get("X-Pullthrough-Cache") != "upstream" {
		t.Fatalf("large blob: got %d Location %q cache %q, want 307 to the CDN", r.StatusCode, loc, r.Header.Get("X-Pullthrough-Cache"))
	}
	got, err := c.cdn.Client().Get(loc)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(got.Body)
	got.Body.Close()
	if string(b) != string(body) {
		t.Fatalf("CDN served %d bytes that differ from the layer", len(b))
	}

	// The mirror fills the blob behind the client's back; then it is a hit.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := m.Store.Stat(context.Background(), "blobs/sha256/"+d.Hex); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp = do(t, http.MethodGet, m.URL+"/v2/library/cuda/blobs/"+d.String(), nil)
	if resp.StatusCode != 200 || resp.Header.Get("X-Pullthrough-Cache") != "hit" || string(resp.body) != string(body) {
		t.Errorf("after the background fill: got %d %q, want a 200 hit", resp.StatusCode, resp.Header.Get("X-Pullthrough-Cache"))
	}
}

func TestWaitPolicyNeverSendsClientsUpstream(t *testing.T) {
	c := newCDNRegistry(t)
	m := c.mirror(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways, LargeBlobPolicy: proxy.PolicyWait, LargeBlobSize: 1})
	img := testenv.SeedImage(t, c.reg, "library/app:1", 64<<10, 2)
	for i := range 2 {
		d, body := layerOf(t, img, i)
		resp := do(t, http.MethodGet, m.URL+"/v2/library/app/blobs/"+d.String(), nil)
		if resp.StatusCode != 200 || string(resp.body) != string(body) {
			t.Errorf("layer %d: got %d %q, want 200 from the mirror", i, resp.StatusCode, resp.Header.Get("X-Pullthrough-Cache"))
		}
	}
	if c.cdnGets.Load() != 2 {
		t.Errorf("got %d CDN GETs (by the mirror, without credentials), want 2", c.cdnGets.Load())
	}
}

// In the local server a client that is not streamed the bytes (a request
// for several ranges of a cold blob, which only the store answers) waits at
// most FillWait for a slow fill, then gets 503 with Retry-After, while the
// fill carries on for its retry.
func TestSlowFillAnswersRetryAfterAndCarriesOn(t *testing.T) {
	reg := testenv.InProcessRegistry(t)
	up := testenv.NewUpstream(t, reg)
	m := mirrorFor(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways, FillWait: 500 * time.Millisecond}, proxy.UpstreamConfig{}, up)
	img := testenv.SeedImage(t, reg, "org/slow:1", 8<<20, 1)
	d, body := layerOf(t, img, 0)
	up.SetFault(testenv.FaultThrottle, "blob")
	resp := do(t, http.MethodGet, m.URL+"/v2/org/slow/blobs/"+d.String(), http.Header{"Range": {"bytes=0-99,200-299"}})
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("slow fill: got %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	last := retryUntilOK(t, m.URL+"/v2/org/slow/blobs/"+d.String())
	if last.StatusCode != 200 || string(last.body) != string(body) {
		t.Fatalf("retries: got %d, want the layer", last.StatusCode)
	}
	if n := up.Count(http.MethodGet, "blob"); n != 1 {
		t.Errorf("got %d upstream blob GETs, want 1 (retries join the running fill)", n)
	}
}
