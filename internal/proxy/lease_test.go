package proxy_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/store"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// S3 may answer racing conditional writes with 409 ConditionalRequestConflict
// (and versitygw sometimes answers a lease write that races a lease delete
// with 409 too). A filler that meets one must try for the lease again, not
// fill without it: here instance A's first lease write gets a 409 while
// instance B arrives during A's fill, and the upstream must see one GET.
func TestLeaseConflictIsRetried(t *testing.T) {
	srv := testenv.StartS3(t)
	target, _ := url.Parse(srv.Endpoint)
	var conflicts, leaseWrites atomic.Int32
	rp := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/leases/") && r.Header.Get("If-None-Match") == "*" {
			if leaseWrites.Add(1) == 1 {
				conflicts.Add(1)
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(http.StatusConflict)
				io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>ConditionalRequestConflict</Code><Message>A conflicting conditional operation is currently in progress against this resource.</Message></Error>`)
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)

	reg := testenv.InProcessRegistry(t)
	up := testenv.NewUpstream(t, reg)
	img := testenv.SeedImage(t, reg, "org/app:1", 256<<10, 1)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()

	instance := func() string {
		u, err := proxy.NewUpstream(proxy.UpstreamConfig{URL: up.URL.String()})
		if err != nil {
			t.Fatal(err)
		}
		st := store.NewS3(srv.ClientAt(front.URL), srv.Bucket, "shared")
		h, err := proxy.New(proxy.Config{}, st, []*proxy.Upstream{u}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		s := httptest.NewServer(h)
		t.Cleanup(s.Close)
		return s.URL
	}
	a, b := instance(), instance()

	up.SetFault(testenv.FaultSlow, "blob") // A's fill is still running when B asks
	done := make(chan int, 2)
	get := func(base string) {
		resp, err := noRedirectClient().Get(base + "/v2/org/app/blobs/" + ld.String())
		if err != nil {
			t.Error(err)
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}
	go get(a)
	time.Sleep(500 * time.Millisecond)
	go get(b)
	for range 2 {
		if st := <-done; st != http.StatusTemporaryRedirect {
			t.Errorf("blob GET: status %d, want 307", st)
		}
	}
	if conflicts.Load() != 1 {
		t.Fatalf("the fault proxy injected %d conflicts, want 1", conflicts.Load())
	}
	if got := up.Count(http.MethodGet, "blob"); got != 1 {
		t.Errorf("upstream saw %d blob GETs from two instances, want 1", got)
	}
}

func noRedirectClient() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
