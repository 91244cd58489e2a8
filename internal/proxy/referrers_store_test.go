package proxy_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/store"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// TestReferrersOfUnknownSubjectsWriteNothing: referrers requests for
// digests the mirror does not hold (random ones, as a scanner or an abuser
// sends) are answered from the upstream and leave no record; those of an
// image pulled through the mirror are kept.
func TestReferrersOfUnknownSubjectsWriteNothing(t *testing.T) {
	st, front := countedS3(t)
	_, base, _, reg := mirrorOn(t, st, proxy.Config{ManifestTTL: time.Hour}, nil)
	img := testenv.SeedImage(t, reg, "org/app:1", 1<<10, 1)
	subject, _ := img.Digest()
	front.Reset()
	for _, d := range randomDigests(20) {
		if r := do(t, http.MethodGet, base+"/v2/org/app/referrers/"+d.String(), nil); r.StatusCode != http.StatusOK {
			t.Fatalf("referrers of %s: got %d %s, want 200", d, r.StatusCode, r.body)
		}
	}
	if got := storePUTs(front); got != 0 {
		t.Errorf("20 referrers requests for random digests: got %d store PUTs, want 0", got)
	}
	testenv.PullImage(t, base, "org/app:1")
	front.Reset()
	if r := do(t, http.MethodGet, base+"/v2/org/app/referrers/"+subject.String(), nil); r.StatusCode != http.StatusOK {
		t.Fatalf("referrers of the pulled image: got %d", r.StatusCode)
	}
	if got := front.Count(http.MethodPut, "referrers"); got != 1 {
		t.Errorf("referrers of a pulled image: got %d referrers PUTs, want 1 (kept for when the upstream is down)", got)
	}
}

// TestSweepRemovesOrphanedReferrers: a referrers record whose subject is
// not cached (left by a request for a random digest before such requests
// stopped writing) is deleted once older than the retention; one whose
// subject is in use is kept.
func TestSweepRemovesOrphanedReferrers(t *testing.T) {
	fsys, err := store.NewFilesystem(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	clock := &testClock{t: t0}
	h, base, _, reg := mirrorOn(t, fsys, proxy.Config{ManifestTTL: time.Hour}, clock)
	img := testenv.SeedImage(t, reg, "org/app:1", 1<<10, 1)
	subject, _ := img.Digest()
	testenv.PullImage(t, base, "org/app:1")
	if r := do(t, http.MethodGet, base+"/v2/org/app/referrers/"+subject.String(), nil); r.StatusCode != http.StatusOK {
		t.Fatalf("referrers: got %d", r.StatusCode)
	}
	var kept string
	for o, err := range fsys.List(context.Background(), "referrers/") {
		if err != nil {
			t.Fatal(err)
		}
		kept = o.Key
	}
	if !strings.HasSuffix(kept, "/"+subject.Algorithm+"/"+subject.Hex) {
		t.Fatalf("got referrers record %q, want one for %s", kept, subject)
	}
	orphan := strings.TrimSuffix(kept, subject.Hex) + randomDigests(1)[0].Encoded()
	if err := fsys.Put(context.Background(), orphan, []byte(`{"checked":"2026-01-01T00:00:00Z","index":{"manifests":[]}}`)); err != nil {
		t.Fatal(err)
	}
	clock.set(t0.Add(35 * 24 * time.Hour))
	testenv.PullImage(t, base, "org/app:1") // still in use
	if _, err := h.Sweep(context.Background(), proxy.SweepOptions{Retention: 30 * 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]bool{kept: true, orphan: false} {
		if got := present(t, fsys, key); got != want {
			t.Errorf("%s present after the sweep: got %v, want %v", key, got, want)
		}
	}
}
