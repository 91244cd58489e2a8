package proxy_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/opencontainers/go-digest"

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
	var conflicts, leaseWrites atomic.Int32
	c := newLeaseCluster(t, func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/leases/") || r.Header.Get("If-None-Match") != "*" || leaseWrites.Add(1) != 1 {
			return false
		}
		conflicts.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusConflict)
		io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>ConditionalRequestConflict</Code><Message>A conflicting conditional operation is currently in progress against this resource.</Message></Error>`)
		return true
	})
	a, b := c.instance(), c.instance()

	c.up.SetFault(testenv.FaultSlow, "blob") // A's fill is still running when B asks
	done := make(chan int, 2)
	go func() { done <- c.get(a) }()
	time.Sleep(500 * time.Millisecond)
	go func() { done <- c.get(b) }()
	for range 2 {
		if st := <-done; !served(st) {
			t.Errorf("blob GET: status %d, want 200 (streamed by the filler) or 307", st)
		}
	}
	if conflicts.Load() != 1 {
		t.Fatalf("the fault proxy injected %d conflicts, want 1", conflicts.Load())
	}
	if got := c.up.Count(http.MethodGet, "blob"); got != 1 {
		t.Errorf("upstream saw %d blob GETs from two instances, want 1", got)
	}
}

// A filler died and left its lease; two instances find it expired at the
// same moment (the fault proxy holds their reads of it until both have
// asked). Exactly one takes it over and fills; the other waits for the
// blob.
func TestExpiredLeaseIsTakenOverOnce(t *testing.T) {
	arrived := make(chan struct{}, 2)
	release := make(chan struct{})
	var reads atomic.Int32
	c := newLeaseCluster(t, func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/leases/") && reads.Add(1) <= 2 {
			arrived <- struct{}{}
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
		}
		return false
	})
	c.plantLease(t, `{"owner":"dead","expires":"2001-01-01T00:00:00Z"}`)
	a, b := c.instance(), c.instance()

	done := make(chan int, 2)
	go func() { done <- c.get(a) }()
	go func() { done <- c.get(b) }()
	for range 2 {
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("the two instances did not both read the expired lease")
		}
	}
	close(release)
	// The filler streams the blob to its client (200); the other waits
	// for it and redirects to the store (307).
	var statuses []int
	for range 2 {
		statuses = append(statuses, <-done)
	}
	slices.Sort(statuses)
	if want := []int{http.StatusOK, http.StatusTemporaryRedirect}; !slices.Equal(statuses, want) {
		t.Errorf("blob GETs: statuses %v, want %v", statuses, want)
	}
	if got := c.up.Count(http.MethodGet, "blob"); got != 1 {
		t.Errorf("upstream saw %d blob GETs after a takeover race, want 1", got)
	}
	if keys := c.leaseKeys(t); len(keys) != 0 {
		t.Errorf("leases left behind: %v", keys)
	}
}

// A lease record nobody can read would otherwise block the blob forever.
func TestUnreadableLeaseIsTakenOver(t *testing.T) {
	c := newLeaseCluster(t, nil)
	c.plantLease(t, "not json")
	if st := c.get(c.instance()); !served(st) {
		t.Fatalf("blob GET: status %d, want 200 (streamed) or 307", st)
	}
	if got := c.up.Count(http.MethodGet, "blob"); got != 1 {
		t.Errorf("upstream saw %d blob GETs, want 1", got)
	}
}

// A filler whose lease was taken over while it worked (its renewals were
// late, say) must not delete the new holder's lease when it finishes, or a
// third instance would start yet another fill.
func TestReleaseLeavesATakenOverLeaseAlone(t *testing.T) {
	c := newLeaseCluster(t, nil)
	a := c.instance()
	c.up.SetFault(testenv.FaultSlow, "blob") // the fill holds its lease for 2 s
	done := make(chan int, 1)
	go func() { done <- c.get(a) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(c.leaseKeys(t)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the fill took no lease within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	other := `{"owner":"other","expires":"2999-01-01T00:00:00Z"}`
	c.plantLease(t, other) // another instance's takeover
	if st := <-done; !served(st) {
		t.Fatalf("blob GET: status %d, want 200 (streamed) or 307", st)
	}
	out, err := c.srv.Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: &c.srv.Bucket, Key: aws.String(c.leaseKey())})
	if err != nil {
		t.Fatalf("the other instance's lease is gone: %v", err)
	}
	defer out.Body.Close()
	if got, _ := io.ReadAll(out.Body); string(got) != other {
		t.Errorf("lease after the first filler finished: %s, want the other instance's", got)
	}
}

// leaseCluster is one S3 server (behind a fault-injecting front) and one
// upstream shared by several proxy instances, the stand-in for Lambda
// instances.
type leaseCluster struct {
	t     *testing.T
	srv   *testenv.S3Server
	front string
	up    *testenv.Upstream
	blob  digest.Digest
}

const leasePrefix = "shared"

// newLeaseCluster starts the cluster; fault, if not nil, sees every S3
// request first and reports whether it answered it.
func newLeaseCluster(t *testing.T, fault func(http.ResponseWriter, *http.Request) bool) *leaseCluster {
	t.Helper()
	srv := testenv.StartS3(t)
	target, _ := url.Parse(srv.Endpoint)
	front := testenv.NewUpstream(t, target)
	if fault != nil {
		front.Intercept(fault)
	}
	reg := testenv.InProcessRegistry(t)
	img := testenv.SeedImage(t, reg, "org/app:1", 256<<10, 1)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	return &leaseCluster{t: t, srv: srv, front: front.URL.String(), up: testenv.NewUpstream(t, reg), blob: digest.Digest(ld.String())}
}

func (c *leaseCluster) instance() string {
	u, err := proxy.NewUpstream(proxy.UpstreamConfig{URL: c.up.URL.String()})
	if err != nil {
		c.t.Fatal(err)
	}
	st := store.NewS3(c.srv.ClientAt(c.front), c.srv.Bucket, leasePrefix)
	h, err := proxy.New(proxy.Config{ManifestTTL: proxy.RevalidateAlways}, st, []*proxy.Upstream{u}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		c.t.Fatal(err)
	}
	s := httptest.NewServer(h)
	c.t.Cleanup(s.Close)
	return s.URL
}

// get asks an instance for the blob and returns the status.
func (c *leaseCluster) get(base string) int {
	resp, err := testenv.NoRedirect.Get(base + "/v2/org/app/blobs/" + c.blob.String())
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0
	}
	return resp.StatusCode
}

// served reports a blob GET that got the blob: streamed while filling
// (200) or redirected to the store (307).
func served(status int) bool {
	return status == http.StatusOK || status == http.StatusTemporaryRedirect
}

func (c *leaseCluster) leaseKey() string {
	return leasePrefix + "/leases/" + c.blob.Encoded()[:2] + "/blobs/" + c.blob.Algorithm().String() + "/" + c.blob.Encoded()
}

func (c *leaseCluster) plantLease(t *testing.T, body string) {
	t.Helper()
	_, err := c.srv.Client().PutObject(context.Background(), &s3.PutObjectInput{Bucket: &c.srv.Bucket, Key: aws.String(c.leaseKey()), Body: strings.NewReader(body)})
	if err != nil {
		t.Fatal(err)
	}
}

func (c *leaseCluster) leaseKeys(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, k := range c.srv.Keys(t) {
		if strings.Contains(k, "/leases/") {
			out = append(out, k)
		}
	}
	return out
}
