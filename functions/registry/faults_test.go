package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/testenv"
)

// Fifty clients pull one cold image through three mirror processes that
// share a bucket (the stand-in for Lambda instances): the upstream must see
// one GET per blob, and every client correct bytes.
func TestConcurrentColdPullsAcrossProcessesFetchEachBlobOnce(t *testing.T) {
	s := newStack(t)
	img := testenv.SeedImage(t, s.reg, "library/rollout:1", 2<<20, 4)
	bin := testenv.BuildMirror(t, false)
	var mirrors []string
	for range 3 {
		m, _ := testenv.StartMirror(t, bin, s.env()...)
		mirrors = append(mirrors, m)
	}
	s.up.Reset()
	want, _ := img.Digest()

	const clients = 50
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- pullVerify(mirrors[i%len(mirrors)], "library/rollout:1", want.String())
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := s.up.Count(http.MethodGet, "blob"); got != 5 { // 4 layers + config
		t.Errorf("upstream saw %d blob GETs for %d clients, want 5 (one per blob)", got, clients)
	}
	if n := s.s3.PendingUploads(t); n != 0 {
		t.Errorf("%d multipart uploads left pending", n)
	}
	for _, k := range s.s3.Keys(t) {
		if strings.HasPrefix(k, "leases/") {
			t.Errorf("fill lease left behind: %s", k)
		}
	}
}

// A mirror killed in the middle of a large fill leaves nothing visible, and
// a restarted one (after the dead lease expires) fills and serves it.
func TestKilledMidFillRecovers(t *testing.T) {
	s := newStack(t)
	img := testenv.SeedImage(t, s.reg, "org/huge:1", 24<<20, 1)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	bin := testenv.BuildMirror(t, false)
	env := s.env("PULLTHROUGH_FILL_LEASE_TTL=3s")
	mirror, proc := testenv.StartMirror(t, bin, env...)

	s.up.SetFault(testenv.FaultThrottle, "blob")
	go http.Get(mirror + "/v2/org/huge/blobs/" + ld.String())
	deadline := time.Now().Add(20 * time.Second)
	for s.up.Count(http.MethodGet, "blob") == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // some parts are uploaded by now
	proc.Kill()
	for _, k := range s.s3.Keys(t) {
		if strings.Contains(k, ld.Hex) && strings.HasPrefix(k, "blobs/") {
			t.Fatalf("partial blob visible after kill: %s", k)
		}
	}

	s.up.SetFault(testenv.FaultNone, "")
	mirror2, _ := testenv.StartMirror(t, bin, env...)
	d, _ := img.Digest()
	if err := pullVerify(mirror2, "org/huge:1", d.String()); err != nil {
		t.Fatal(err)
	}
}

// With the S3 server gone, requests fail fast with a 503-class OCI error,
// and everything works again once it is back.
func TestS3OutageAnswers503AndRecovers(t *testing.T) {
	s := newStack(t)
	img := testenv.SeedImage(t, s.reg, "library/app:1", 64<<10, 2)
	mirror, _ := testenv.StartMirror(t, testenv.BuildMirror(t, false), s.env()...)
	d, _ := img.Digest()
	if err := pullVerify(mirror, "library/app:1", d.String()); err != nil {
		t.Fatal(err)
	}
	// A blob this process has not seen: its existence is not cached in
	// memory, so the store must be asked.
	other := testenv.SeedImage(t, s.reg, "library/app:2", 64<<10, 1)
	layers, _ := other.Layers()
	ld, _ := layers[0].Digest()

	s.s3.Stop()
	for _, path := range []string{"/v2/library/app/blobs/" + ld.String(), "/v2/library/app/manifests/" + d.String()} {
		start := time.Now()
		resp, err := testenv.NoRedirect.Get(mirror + path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"UNAVAILABLE"`) {
			t.Errorf("%s with S3 down: got %d %s, want 503 UNAVAILABLE", path, resp.StatusCode, body)
		}
		if el := time.Since(start); el > 30*time.Second {
			t.Errorf("%s with S3 down took %s", path, el)
		}
	}
	s.s3.Restart(t)
	if err := pullVerify(mirror, "library/app:1", d.String()); err != nil {
		t.Errorf("after S3 came back: %v", err)
	}
}

// An upstream 429 with Retry-After makes the mirror stop asking until then
// and serve what it has.
func TestRetryAfterIsRespected(t *testing.T) {
	s := newStack(t)
	testenv.SeedImage(t, s.reg, "library/app:1", 4<<10, 1)
	testenv.SeedImage(t, s.reg, "library/other:1", 4<<10, 1)
	mirror, _ := testenv.StartMirror(t, testenv.BuildMirror(t, false), s.env("PULLTHROUGH_MANIFEST_TTL=0s")...)
	get := func(path string) *http.Response {
		resp, err := http.Get(mirror + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	get("/v2/library/app/manifests/1")
	s.up.SetFault(testenv.Fault429, "")
	if r := get("/v2/library/other/manifests/1"); r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Errorf("uncached during 429: got %d Retry-After %q, want 429 with Retry-After", r.StatusCode, r.Header.Get("Retry-After"))
	}
	s.up.Reset()
	for range 3 {
		if r := get("/v2/library/app/manifests/1"); r.StatusCode != 200 || r.Header.Get("X-Pullthrough-Cache") != "stale" {
			t.Errorf("cached during back-off: got %d %q, want 200 stale", r.StatusCode, r.Header.Get("X-Pullthrough-Cache"))
		}
	}
	if n := s.up.Total(); n != 0 {
		t.Errorf("mirror called the upstream %d times during Retry-After, want 0", n)
	}
	s.up.SetFault(testenv.FaultNone, "")
	time.Sleep(2100 * time.Millisecond)
	if r := get("/v2/library/other/manifests/1"); r.StatusCode != 200 {
		t.Errorf("after Retry-After: got %d, want 200", r.StatusCode)
	}
}

// pullVerify pulls an image with a real client, checks every digest, and
// compares the manifest digest.
func pullVerify(base, repoRef, wantDigest string) error {
	d, err := testenv.Pull(base, repoRef)
	if err != nil {
		return err
	}
	if d.String() != wantDigest {
		return fmt.Errorf("pull %s: got %s, want %s", repoRef, d, wantDigest)
	}
	return nil
}
