package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/store"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// testStore is a store under test with a way around the mirror: remove
// deletes an object as a person or a bucket lifecycle rule would, and
// front (S3 only) counts the store requests.
type testStore struct {
	st     proxy.Store
	remove func(t *testing.T, key string)
	front  *testenv.Upstream
	srv    *testenv.S3Server
	prefix string
}

// eachStore runs fn against a fresh filesystem store and a fresh S3 store
// (versitygw behind a counting, fault-injecting front).
func eachStore(t *testing.T, fn func(t *testing.T, ts testStore)) {
	t.Run("filesystem", func(t *testing.T) {
		fsys, err := store.NewFilesystem(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		fn(t, testStore{st: fsys, remove: func(t *testing.T, key string) {
			if err := os.Remove(filepath.Join(fsys.Root(), filepath.FromSlash(key))); err != nil {
				t.Fatal(err)
			}
		}})
	})
	t.Run("s3", func(t *testing.T) {
		srv := testenv.StartS3(t)
		target, _ := url.Parse(srv.Endpoint)
		front := testenv.NewUpstream(t, target)
		const prefix = "cache"
		fn(t, testStore{
			st:     store.NewS3(srv.ClientAt(front.URL.String()), srv.Bucket, prefix),
			front:  front,
			srv:    srv,
			prefix: prefix,
			remove: func(t *testing.T, key string) {
				_, err := srv.Client().DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: &srv.Bucket, Key: aws.String(prefix + "/" + key)})
				if err != nil {
					t.Fatal(err)
				}
			},
		})
	})
}

// testClock is a settable clock for the proxy under test.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// mirrorOn serves a proxy over st in front of a counting wrapper of a real
// in-process registry, on clock.
func mirrorOn(t *testing.T, st proxy.Store, cfg proxy.Config, clock *testClock) (*proxy.Proxy, string, *testenv.Upstream, *url.URL) {
	t.Helper()
	reg := testenv.InProcessRegistry(t)
	up := testenv.NewUpstream(t, reg)
	u, err := proxy.NewUpstream(proxy.UpstreamConfig{URL: up.URL.String()})
	if err != nil {
		t.Fatal(err)
	}
	h, err := proxy.New(cfg, st, []*proxy.Upstream{u}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if clock != nil {
		h.SetClock(clock.now)
	}
	t.Cleanup(func() { waitFills(t, h) })
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv.URL, up, reg
}

func blobKeyOf(t *testing.T, h v1.Hash) string     { return "blobs/" + h.Algorithm + "/" + h.Hex }
func manifestKeyOf(t *testing.T, h v1.Hash) string { return "manifests/" + h.Algorithm + "/" + h.Hex }
func present(t *testing.T, st proxy.Store, key string) bool {
	t.Helper()
	_, err := st.Stat(context.Background(), key)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stat %s: %v", key, err)
	}
	return err == nil
}

// A cached object deleted behind the mirror's back (by hand, or by a
// bucket lifecycle rule) is filled again by the next pull instead of
// failing it: no memo sends clients to an object that is gone.
func TestDeletedObjectsAreRefilled(t *testing.T) {
	eachStore(t, func(t *testing.T, ts testStore) {
		h, base, up, reg := mirrorOn(t, ts.st, proxy.Config{ManifestTTL: time.Hour}, nil)
		img := testenv.SeedImage(t, reg, "org/app:1", 32<<10, 2)
		d, _ := img.Digest()
		testenv.PullImage(t, base, "org/app:1")
		testenv.PullImage(t, base, "org/app@"+d.String()) // every memo is warm now
		waitFills(t, h)                                   // streamed fills publish after their last byte

		layers, _ := img.Layers()
		ld, _ := layers[0].Digest()
		ts.remove(t, blobKeyOf(t, ld))
		up.Reset()
		if _, err := testenv.Pull(base, "org/app:1"); err != nil {
			t.Fatalf("pull after the layer was deleted: %v", err)
		}
		if n := up.Count(http.MethodGet, "blob"); n != 1 {
			t.Errorf("got %d upstream blob GETs, want 1 (the deleted layer)", n)
		}
		waitStored(t, ts.st, ld) // a streamed fill publishes after its last byte

		// Everything gone, as after an expiry rule: by digest and by tag.
		cfg, _ := img.ConfigName()
		ld2, _ := layers[1].Digest()
		for _, h := range []v1.Hash{cfg, ld, ld2} {
			ts.remove(t, blobKeyOf(t, h))
		}
		ts.remove(t, manifestKeyOf(t, d))
		for _, ref := range []string{"org/app@" + d.String(), "org/app:1"} {
			if _, err := testenv.Pull(base, ref); err != nil {
				t.Fatalf("pull %s after everything was deleted: %v", ref, err)
			}
		}
		// Streamed fills publish after their last byte: wait for the
		// fills, not for the objects, so a fill that stored nothing fails.
		waitFills(t, h)
		for _, h := range []v1.Hash{cfg, ld, ld2} {
			if !present(t, ts.st, blobKeyOf(t, h)) {
				t.Errorf("blob %s was not stored again", h)
			}
		}
		// A new process (nothing in memory) finds the manifest again too.
		_, base2, _, _ := mirrorOnUpstream(t, ts.st, up)
		if _, err := testenv.Pull(base2, "org/app@"+d.String()); err != nil {
			t.Fatalf("new process: %v", err)
		}
		if !present(t, ts.st, manifestKeyOf(t, d)) {
			t.Errorf("manifest was not stored again")
		}
	})
}

// mirrorOnUpstream is a second process over the same store and upstream.
func mirrorOnUpstream(t *testing.T, st proxy.Store, up *testenv.Upstream) (*proxy.Proxy, string, *testenv.Upstream, *url.URL) {
	t.Helper()
	u, err := proxy.NewUpstream(proxy.UpstreamConfig{URL: up.URL.String()})
	if err != nil {
		t.Fatal(err)
	}
	h, err := proxy.New(proxy.Config{ManifestTTL: proxy.RevalidateAlways}, st, []*proxy.Upstream{u}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv.URL, up, nil
}

// push writes an image to reg as repo:tag.
func push(t *testing.T, reg *url.URL, repoTag string, img v1.Image) v1.Hash {
	t.Helper()
	ref, err := name.ParseReference(reg.Host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return d
}

// imageBlobs lists an image's config and layers.
func imageBlobs(t *testing.T, img v1.Image) []v1.Hash {
	t.Helper()
	cfg, _ := img.ConfigName()
	out := []v1.Hash{cfg}
	layers, _ := img.Layers()
	for _, l := range layers {
		d, _ := l.Digest()
		out = append(out, d)
	}
	return out
}

// A sweep keeps what a tag or digest pulled within the retention uses
// (walking index → manifests → config and layers, shared layers included)
// and deletes the rest with its links; a dry run deletes nothing; what was
// deleted is filled again by the next pull.
func TestSweepKeepsUsedContent(t *testing.T) {
	eachStore(t, func(t *testing.T, ts testStore) {
		t0 := time.Now()
		clock := &testClock{t: t0}
		h, base, up, reg := mirrorOn(t, ts.st, proxy.Config{ManifestTTL: time.Hour}, clock)
		kept, _ := random.Image(16<<10, 2)
		extra, _ := random.Layer(16<<10, types.DockerLayer)
		gone, _ := mutate.AppendLayers(kept, extra) // shares kept's layers
		byDigest, _ := random.Image(16<<10, 1)
		keptD := push(t, reg, "org/kept:1", kept)
		goneD := push(t, reg, "org/gone:1", gone)
		digD := push(t, reg, "org/dig:1", byDigest)
		idx := testenv.SeedIndex(t, reg, "org/idx:1", 8<<10, 1, 2)

		pullAll := func(refs ...string) {
			t.Helper()
			for _, ref := range refs {
				if strings.HasPrefix(ref, "org/idx") {
					testenv.PullIndex(t, base, ref)
					continue
				}
				testenv.PullImage(t, base, ref)
			}
		}
		pullAll("org/kept:1", "org/gone:1", "org/dig@"+digD.String(), "org/idx:1")
		if r := do(t, http.MethodGet, base+"/v2/org/gone/tags/list", nil); r.StatusCode != http.StatusOK {
			t.Fatalf("tags/list: got %d", r.StatusCode)
		}
		clock.set(t0.Add(20 * 24 * time.Hour))
		pullAll("org/kept:1", "org/dig@"+digD.String(), "org/idx:1")
		clock.set(t0.Add(35 * 24 * time.Hour))

		keys := func() []string {
			var out []string
			for o, err := range ts.st.(proxy.Lister).List(context.Background(), "") {
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, o.Key)
			}
			return out
		}
		before := keys()
		var dry bytes.Buffer
		rep, err := h.Sweep(context.Background(), proxy.SweepOptions{Retention: 30 * 24 * time.Hour, DryRun: true, Out: &dry})
		if err != nil {
			t.Fatal(err)
		}
		if after := keys(); !slices.Equal(before, after) {
			t.Fatalf("dry run changed the store: %d objects before, %d after", len(before), len(after))
		}
		if rep.Deleted == 0 || strings.Count(dry.String(), "would delete ") != rep.Deleted {
			t.Fatalf("dry run: got report %+v and output\n%s\nwant one line per object that would go", rep, dry.String())
		}
		if ts.front != nil {
			ts.front.Reset()
		}
		rep, err = h.Sweep(context.Background(), proxy.SweepOptions{Retention: 30 * 24 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		cost := ""
		if ts.front != nil {
			cost = ", " + strconv.Itoa(ts.front.Total()) + " S3 requests"
		}
		t.Logf("sweep: %d objects listed, %d records read, %d deleted (%d bytes), %d kept%s", rep.Listed, rep.Read, rep.Deleted, rep.BytesFreed, rep.Kept, cost)

		want := map[string]bool{manifestKeyOf(t, keptD): true, manifestKeyOf(t, digD): true, manifestKeyOf(t, goneD): false}
		for _, b := range imageBlobs(t, kept) {
			want[blobKeyOf(t, b)] = true // shared with the unused image
		}
		for _, b := range imageBlobs(t, byDigest) {
			want[blobKeyOf(t, b)] = true
		}
		goneCfg, _ := gone.ConfigName()
		extraD, _ := extra.Digest()
		want[blobKeyOf(t, goneCfg)] = false
		want[blobKeyOf(t, extraD)] = false
		idxD, _ := idx.Digest()
		want[manifestKeyOf(t, idxD)] = true
		im, _ := idx.IndexManifest()
		for _, c := range im.Manifests {
			want[manifestKeyOf(t, c.Digest)] = true
			child, _ := idx.Image(c.Digest)
			for _, b := range imageBlobs(t, child) {
				want[blobKeyOf(t, b)] = true
			}
		}
		for key, w := range want {
			if got := present(t, ts.st, key); got != w {
				t.Errorf("%s: got present=%v, want %v", key, got, w)
			}
		}
		for _, k := range keys() {
			if strings.HasPrefix(k, "tags/") && strings.Contains(k, "/org/gone/") {
				t.Errorf("unused tag record or tag list %s was kept", k)
			}
			if strings.HasPrefix(k, "links/") && strings.HasSuffix(k, goneD.Hex) {
				t.Errorf("link of a deleted manifest %s was kept", k)
			}
		}
		if got := strings.Count(dry.String(), "would delete "); got != rep.Deleted {
			t.Errorf("dry run listed %d objects, the sweep deleted %d", got, rep.Deleted)
		}

		up.Reset()
		pullAll("org/kept:1")
		if n := up.Count(http.MethodGet, "blob"); n != 0 {
			t.Errorf("kept image: got %d upstream blob GETs after the sweep, want 0", n)
		}
		pullAll("org/gone:1") // deleted content comes back
		if n := up.Count(http.MethodGet, "blob"); n != 2 {
			t.Errorf("swept image: got %d upstream blob GETs, want 2 (its config and own layer)", n)
		}
	})
}

// Hits record use at most once a day per manifest and per tag, however
// many there are: the sweep's inputs must not cost a write per pull.
func TestUseIsRecordedOncePerDay(t *testing.T) {
	st, front := countedS3(t)
	t0 := time.Now()
	clock := &testClock{t: t0}
	// Tags are not revalidated in this test: a revalidation is a write
	// of its own, and counts as use.
	h, base, _, reg := mirrorOn(t, st, proxy.Config{ManifestTTL: 90 * 24 * time.Hour}, clock)
	testenv.SeedImage(t, reg, "org/app:1", 16<<10, 1)
	d := testenv.PullImage(t, base, "org/app:1")
	waitFills(t, h) // a streamed fill publishes (and links) after its last byte

	accept := http.Header{"Accept": {string(types.DockerManifestSchema2), string(types.OCIManifestSchema1)}}
	get := func(ref string) {
		t.Helper()
		if r := do(t, http.MethodGet, base+"/v2/org/app/manifests/"+ref, accept); r.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: got %d", ref, r.StatusCode)
		}
	}
	for _, tc := range []struct {
		name, ref, kind string
	}{
		{"tag", "1", "other"}, // tags/... is not a /manifests/ path
		{"digest", d.String(), "manifest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at := t0.Add(2 * 24 * time.Hour)
			clock.set(at)
			front.Reset()
			// 60 hits over 23.6 hours: one write.
			for i := range 60 {
				clock.set(at.Add(time.Duration(i) * 24 * time.Minute))
				get(tc.ref)
			}
			if n := front.Count(http.MethodPut, tc.kind); n != 1 {
				t.Errorf("60 hits in a day: got %d writes, want 1", n)
			}
			clock.set(at.Add(25 * time.Hour))
			get(tc.ref)
			if n := front.Count(http.MethodPut, tc.kind); n != 2 {
				t.Errorf("a hit the next day: got %d writes in all, want 2", n)
			}
		})
	}
}

// A sweep that runs while a fill is finishing never deletes the blob: an
// unreferenced blob that looks old is kept while its fill lease is live.
// The lease release (a DELETE under leases/) is held at the S3 front, so
// the sweep runs between the fill's publish and its release.
func TestSweepRacingFillKeepsBlob(t *testing.T) {
	st, front := countedS3(t)
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	front.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodDelete && strings.Contains(r.URL.Path, "/leases/") {
			once.Do(func() { close(held) })
			select {
			case <-release:
			case <-time.After(20 * time.Second):
			}
		}
		return false
	})
	// Everything real-time is older than the retention on this clock, so
	// only the lease can keep the blob.
	clock := &testClock{t: time.Now().Add(60 * 24 * time.Hour)}
	h, base, _, reg := mirrorOn(t, st, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, clock)
	img := testenv.SeedImage(t, reg, "org/app:1", 64<<10, 1)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()

	done := make(chan int, 1)
	go func() {
		resp, err := testenv.NoRedirect.Get(base + "/v2/org/app/blobs/" + ld.String())
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	select {
	case <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("the fill never released its lease")
	}
	if !present(t, st, blobKeyOf(t, ld)) {
		t.Fatal("blob not published before the lease release")
	}
	rep, err := h.Sweep(context.Background(), proxy.SweepOptions{Retention: 30 * 24 * time.Hour})
	close(release)
	if err != nil {
		t.Fatal(err)
	}
	// The cold GET streams the blob while it fills (200), or, where it
	// cannot, redirects to the store once filled (307).
	if status := <-done; status != http.StatusOK && status != http.StatusTemporaryRedirect {
		t.Errorf("blob GET: got %d, want 200 or 307", status)
	}
	if !present(t, st, blobKeyOf(t, ld)) {
		t.Errorf("the sweep deleted the blob of a fill in progress (report %+v)", rep)
	}
}

// What a warm pull costs in store requests now that every blob hit asks
// the store: one HeadObject per blob request the mirror answers, nothing
// for the manifest within its TTL, and the client's own presigned GETs.
func TestWarmPullStoreRequests(t *testing.T) {
	st, s3front := countedS3(t)
	h, base, _, reg := mirrorOn(t, st, proxy.Config{ManifestTTL: time.Hour}, nil)
	mirrorURL, _ := url.Parse(base)
	clientFront := testenv.NewUpstream(t, mirrorURL) // counts what the client asks the mirror
	testenv.SeedImage(t, reg, "org/app:1", 16<<10, 3)
	testenv.PullImage(t, clientFront.URL.String(), "org/app:1")
	// A cold pull's streamed fills publish after their last byte, and a
	// request that finds a fill still publishing joins it instead of
	// asking the store: wait for them, so that what is counted below is
	// what the code decides for a warm pull, not what timing let through.
	waitFills(t, h)
	// The first warm pull also reads the manifest record into memory once
	// (one GetObject); measure the steady state after it.
	testenv.PullImage(t, clientFront.URL.String(), "org/app:1")
	s3front.Reset()
	clientFront.Reset()
	testenv.PullImage(t, clientFront.URL.String(), "org/app:1")
	blobReqs := clientFront.Count("", "blob")
	heads, presigned, total := s3front.Count(http.MethodHead, "blob"), s3front.Count(http.MethodGet, "blob"), s3front.Total()
	t.Logf("warm pull: %d manifest and %d blob requests to the mirror; %d HeadObject by the mirror, %d presigned GETs by the client, %d S3 requests in all",
		clientFront.Count("", "manifest"), blobReqs, heads, presigned, total)
	if heads != blobReqs || total != heads+presigned {
		t.Errorf("got %d HeadObject for %d blob requests and %d other S3 requests by the mirror; want one per blob request and no other", heads, blobReqs, total-heads-presigned)
	}
}

// The sweep's cost in store requests, logged per cached image: a sweep
// that keeps everything (all used recently) and one that deletes
// everything (none used within the retention). Per sweep: one LIST per
// 1,000 objects of each prefix, one GET per tag and manifest record, one
// DELETE per object deleted.
func TestSweepCost(t *testing.T) {
	if testing.Short() {
		t.Skip("pulls 100 images")
	}
	st, front := countedS3(t)
	t0 := time.Now()
	clock := &testClock{t: t0}
	h, base, _, reg := mirrorOn(t, st, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, clock)
	const images = 100
	for i := range images {
		ref := "org/app" + strconv.Itoa(i) + ":1"
		testenv.SeedImage(t, reg, ref, 1<<10, 2)
		testenv.PullImage(t, base, ref)
	}
	for _, tc := range []struct {
		name   string
		at     time.Time
		delete bool
	}{
		{"keeps all", t0.Add(24 * time.Hour), false},
		{"deletes all", t0.Add(40 * 24 * time.Hour), true},
	} {
		clock.set(tc.at)
		front.Reset()
		rep, err := h.Sweep(context.Background(), proxy.SweepOptions{Retention: 30 * 24 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		n := front.Total()
		t.Logf("sweep that %s of %d images (%d objects listed): %d S3 requests (%d reads, %d deletes), %.0f per 1,000 images",
			tc.name, images, rep.Listed, n, rep.Read, rep.Deleted, float64(n)*1000/images)
		if tc.delete != (rep.Deleted > 0) {
			t.Errorf("%s: got %d deleted", tc.name, rep.Deleted)
		}
		// Every request is a listing page, a record read or a delete.
		if want := rep.Read + rep.Deleted; n < want || n > want+12 {
			t.Errorf("%s: got %d S3 requests, want %d reads and deletes plus a few listing pages", tc.name, n, want)
		}
	}
}

// countedS3 is an S3 store (prefix "cache") on a fresh versitygw reached
// through a counting, interceptable front, so tests see every store request.
func countedS3(t *testing.T) (*store.S3, *testenv.Upstream) {
	t.Helper()
	srv := testenv.StartS3(t)
	target, _ := url.Parse(srv.Endpoint)
	front := testenv.NewUpstream(t, target)
	return store.NewS3(srv.ClientAt(front.URL.String()), srv.Bucket, "cache"), front
}
