package proxy_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// The last good tag list is kept for stale serving, but rewritten only
// when it changed: ten listings of an unchanged repository cost one PUT,
// and a new tag one more.
func TestTagListStoredOnlyWhenChanged(t *testing.T) {
	st, s3front := countedS3(t)
	_, base, _, reg := mirrorOn(t, st, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, nil)
	testenv.SeedImage(t, reg, "org/app:1", 1<<10, 1)
	var listPuts atomic.Int64
	s3front.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/_list") {
			listPuts.Add(1)
		}
		return false
	})
	puts := func() int { return int(listPuts.Load()) }
	list := func() {
		t.Helper()
		if resp := do(t, http.MethodGet, base+"/v2/org/app/tags/list", nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("tags/list: got %d", resp.StatusCode)
		}
	}
	for range 10 {
		list()
	}
	if n := puts(); n != 1 {
		t.Errorf("10 listings of an unchanged repository wrote the list %d times, want 1", n)
	}
	testenv.SeedImage(t, reg, "org/app:2", 1<<10, 1)
	list()
	list()
	if n := puts(); n != 2 {
		t.Errorf("after a new tag: the list was written %d times in all, want 2", n)
	}
}
