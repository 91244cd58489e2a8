package cache

import (
	"log/slog"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The cache policy's decisions as tables: pure functions of a record, the
// clock and what the upstream answered, so no server is needed. The
// end-to-end tests (revalidate_test.go, revoke_test.go, proxy_test.go) show
// the same decisions through real registries.

var (
	checkedAt  = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cachedDg   = digest.FromString("cached manifest")
	movedDg    = digest.FromString("moved manifest")
	cachedTag  = Tag{Digest: cachedDg, MediaType: ocispec.MediaTypeImageIndex, ETag: `"e1"`, Checked: checkedAt}
	hourPolicy = Policy{ManifestTTL: time.Hour}
)

func TestTableTagLookup(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pol   Policy
		found bool
		now   time.Time
		want  TagStep
	}{
		{"no record", hourPolicy, false, checkedAt, TagFetch},
		{"just checked", hourPolicy, true, checkedAt, TagServe},
		{"one ns before the TTL", hourPolicy, true, checkedAt.Add(time.Hour - 1), TagServe},
		{"exactly the TTL", hourPolicy, true, checkedAt.Add(time.Hour), TagRevalidate},
		{"past the TTL", hourPolicy, true, checkedAt.Add(2 * time.Hour), TagRevalidate},
		{"checked a little in the future (clock skew)", hourPolicy, true, checkedAt.Add(-time.Minute), TagServe},
		{"checked more than the TTL in the future", hourPolicy, true, checkedAt.Add(-2 * time.Hour), TagRevalidate},
		{"RevalidateAlways, just checked", Policy{ManifestTTL: RevalidateAlways}, true, checkedAt, TagRevalidate},
		{"RevalidateAlways, no record", Policy{ManifestTTL: RevalidateAlways}, false, checkedAt, TagFetch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.pol.Lookup(cachedTag, tc.found, tc.now); got != tc.want {
				t.Errorf("got step %s, want %s", got, tc.want)
			}
		})
	}
}

func TestTableRevalidation(t *testing.T) {
	head := func(status int, d digest.Digest) HeadAnswer {
		return HeadAnswer{Asked: true, Status: status, Digest: d}
	}
	same := GetAnswer{Kind: GetOK, Digest: cachedDg}
	moved := GetAnswer{Kind: GetOK, Digest: movedDg}
	grace := Policy{ManifestTTL: time.Hour, DeniedGrace: 2 * time.Hour}
	for _, tc := range []struct {
		name         string
		pol          Policy
		now          time.Time
		ans          RevalAnswer
		want         Verdict
		wantHeadless int
	}{
		// Upstream trouble: the cached copy is served, marked stale.
		{name: "backing off asks nothing", ans: RevalAnswer{BackingOff: true}, want: VerdictStale},
		{name: "HEAD transport error", ans: RevalAnswer{Head: HeadAnswer{Asked: true, Failed: true}}, want: VerdictStale},
		{name: "HEAD 500", ans: RevalAnswer{Head: head(500, "")}, want: VerdictStale},
		{name: "HEAD 503", ans: RevalAnswer{Head: head(503, "")}, want: VerdictStale},
		{name: "HEAD 429", ans: RevalAnswer{Head: head(429, "")}, want: VerdictStale},
		{name: "GET 5xx or unreachable", ans: RevalAnswer{Head: head(405, ""), Get: GetAnswer{Kind: GetFailed}}, want: VerdictStale},
		// Unchanged.
		{name: "HEAD same digest", ans: RevalAnswer{Head: head(200, cachedDg)}, want: VerdictRevalidated},
		{name: "HEAD 405 then GET 304", ans: RevalAnswer{Head: head(405, ""), Get: GetAnswer{Kind: GetOK, NotModified: true}}, want: VerdictRevalidated, wantHeadless: 405},
		{name: "HEAD without digest then GET same digest", ans: RevalAnswer{Head: head(200, ""), Get: same}, want: VerdictRevalidated, wantHeadless: 200},
		{name: "headless upstream: GET same digest", ans: RevalAnswer{Get: same}, want: VerdictRevalidated},
		// Moved.
		{name: "HEAD new digest asks GET", ans: RevalAnswer{Head: head(200, movedDg)}, want: VerdictAskGET},
		{name: "HEAD new digest then GET new digest", ans: RevalAnswer{Head: head(200, movedDg), Get: moved}, want: VerdictReplaced},
		{name: "HEAD 501 then GET new digest", ans: RevalAnswer{Head: head(501, ""), Get: moved}, want: VerdictReplaced, wantHeadless: 501},
		// Gone: only a GET's 404, 410 or 451 says so (GoneStatus).
		{name: "HEAD 404 alone is not gone", ans: RevalAnswer{Head: head(404, "")}, want: VerdictAskGET},
		{name: "HEAD 404 then GET same digest", ans: RevalAnswer{Head: head(404, ""), Get: same}, want: VerdictRevalidated, wantHeadless: 404},
		{name: "HEAD 404 then GET 404", ans: RevalAnswer{Head: head(404, ""), Get: GetAnswer{Kind: GetGone}}, want: VerdictGone},
		{name: "headless upstream: GET 404", ans: RevalAnswer{Get: GetAnswer{Kind: GetGone}}, want: VerdictGone},
		// Denied: a GET's 401/403 after the token flow.
		{name: "GET denied without grace", ans: RevalAnswer{Head: head(403, ""), Get: GetAnswer{Kind: GetDenied}}, want: VerdictDenied},
		{name: "GET denied within grace", pol: grace, now: checkedAt.Add(2*time.Hour - 1), ans: RevalAnswer{Head: head(401, ""), Get: GetAnswer{Kind: GetDenied}}, want: VerdictStale},
		{name: "GET denied exactly at the end of grace", pol: grace, now: checkedAt.Add(2 * time.Hour), ans: RevalAnswer{Head: head(401, ""), Get: GetAnswer{Kind: GetDenied}}, want: VerdictDenied},
		{name: "HEAD 401 then GET works", ans: RevalAnswer{Head: head(401, ""), Get: same}, want: VerdictRevalidated, wantHeadless: 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol, now := tc.pol, tc.now
			if pol == (Policy{}) {
				pol = hourPolicy
			}
			if now.IsZero() {
				now = checkedAt.Add(time.Hour)
			}
			if got := pol.AfterRevalidation(cachedTag, now, tc.ans); got != tc.want {
				t.Errorf("got Verdict %s, want %s", got, tc.want)
			}
			if got := tc.ans.HeadlessStatus(); got != tc.wantHeadless {
				t.Errorf("got headless status %d, want %d", got, tc.wantHeadless)
			}
		})
	}
}

// fakeClock is a settable clock for the cache.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func newTestCache(pol Policy, maxManifestSize int64) (*Cache, *fakeClock) {
	clock := &fakeClock{t: checkedAt}
	c := New(pol, maxManifestSize, nil, slog.New(slog.DiscardHandler))
	c.now = clock.now
	return c, clock
}

// TestTableCacheClock: memo expiries and once-a-day use records, by the
// cache's clock, on both sides of each boundary.
func TestTableCacheClock(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after time.Duration // since the memo entry or the last use
		check func(c *Cache) bool
		want  bool
	}{
		{"presigned URL reused in the first half of its life", 15*time.Minute/2 - 1, func(c *Cache) bool { _, ok := c.PresignedURL("GET blobs/x"); return ok }, true},
		{"presigned URL re-signed at half its life", 15 * time.Minute / 2, func(c *Cache) bool { _, ok := c.PresignedURL("GET blobs/x"); return ok }, false},
		{"use not recorded twice in a day", UseEvery - 1, func(c *Cache) bool { return UseDue(checkedAt, c.now()) }, false},
		{"use recorded again after a day", UseEvery, func(c *Cache) bool { return UseDue(checkedAt, c.now()) }, true},
		{"tag memo fresh before the TTL", time.Hour - 1, func(c *Cache) bool { _, ok := c.tags.Get("k", c.now(), c.policy.ManifestTTL); return ok }, true},
		{"tag memo stale at the TTL", time.Hour, func(c *Cache) bool { _, ok := c.tags.Get("k", c.now(), c.policy.ManifestTTL); return ok }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, clock := newTestCache(Policy{ManifestTTL: time.Hour, PresignTTL: 15 * time.Minute}, 1<<10)
			c.presigned.Put("GET blobs/x", "https://signed", c.now())
			c.tags.Put("k", cachedTag, c.now())
			clock.t = checkedAt.Add(tc.after)
			if got := tc.check(c); got != tc.want {
				t.Errorf("after %s: got %v, want %v", tc.after, got, tc.want)
			}
		})
	}
}

// A fill lease holds up to and including its expiry; the fill that finds
// it and the sweep judge it by the same rule.
func TestTableLeaseLive(t *testing.T) {
	exp := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		now  time.Time
		want bool
	}{
		{exp.Add(-time.Minute), true},
		{exp, true},
		{exp.Add(time.Nanosecond), false},
		{exp.Add(time.Hour), false},
	} {
		if got := LeaseLive(LeaseRecord{Owner: "a", Expires: exp}, tc.now); got != tc.want {
			t.Errorf("LeaseLive at expiry%+v: got %v, want %v", tc.now.Sub(exp), got, tc.want)
		}
	}
}
