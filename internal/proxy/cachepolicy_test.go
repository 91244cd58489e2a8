package proxy

import (
	"errors"
	"log/slog"
	"net/http"
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
	cachedTag  = tagRecord{Digest: cachedDg, MediaType: ocispec.MediaTypeImageIndex, ETag: `"e1"`, Checked: checkedAt}
	hourPolicy = cachePolicy{ManifestTTL: time.Hour}
)

func TestTableTagLookup(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pol   cachePolicy
		found bool
		now   time.Time
		want  tagStep
	}{
		{"no record", hourPolicy, false, checkedAt, tagFetch},
		{"just checked", hourPolicy, true, checkedAt, tagServe},
		{"one ns before the TTL", hourPolicy, true, checkedAt.Add(time.Hour - 1), tagServe},
		{"exactly the TTL", hourPolicy, true, checkedAt.Add(time.Hour), tagRevalidate},
		{"past the TTL", hourPolicy, true, checkedAt.Add(2 * time.Hour), tagRevalidate},
		{"checked a little in the future (clock skew)", hourPolicy, true, checkedAt.Add(-time.Minute), tagServe},
		{"checked more than the TTL in the future", hourPolicy, true, checkedAt.Add(-2 * time.Hour), tagRevalidate},
		{"RevalidateAlways, just checked", cachePolicy{ManifestTTL: RevalidateAlways}, true, checkedAt, tagRevalidate},
		{"RevalidateAlways, no record", cachePolicy{ManifestTTL: RevalidateAlways}, false, checkedAt, tagFetch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.pol.lookup(cachedTag, tc.found, tc.now); got != tc.want {
				t.Errorf("got step %s, want %s", got, tc.want)
			}
		})
	}
}

func TestTableRevalidation(t *testing.T) {
	head := func(status int, d digest.Digest) headAnswer {
		return headAnswer{Asked: true, Status: status, Digest: d}
	}
	same := getAnswer{Kind: getOK, Digest: cachedDg}
	moved := getAnswer{Kind: getOK, Digest: movedDg}
	grace := cachePolicy{ManifestTTL: time.Hour, DeniedGrace: 2 * time.Hour}
	for _, tc := range []struct {
		name         string
		pol          cachePolicy
		now          time.Time
		ans          revalAnswer
		want         verdict
		wantHeadless int
	}{
		// Upstream trouble: the cached copy is served, marked stale.
		{name: "backing off asks nothing", ans: revalAnswer{BackingOff: true}, want: verdictStale},
		{name: "HEAD transport error", ans: revalAnswer{Head: headAnswer{Asked: true, Failed: true}}, want: verdictStale},
		{name: "HEAD 500", ans: revalAnswer{Head: head(500, "")}, want: verdictStale},
		{name: "HEAD 503", ans: revalAnswer{Head: head(503, "")}, want: verdictStale},
		{name: "HEAD 429", ans: revalAnswer{Head: head(429, "")}, want: verdictStale},
		{name: "GET 5xx or unreachable", ans: revalAnswer{Head: head(405, ""), Get: getAnswer{Kind: getFailed}}, want: verdictStale},
		// Unchanged.
		{name: "HEAD same digest", ans: revalAnswer{Head: head(200, cachedDg)}, want: verdictRevalidated},
		{name: "HEAD 405 then GET 304", ans: revalAnswer{Head: head(405, ""), Get: getAnswer{Kind: getOK, NotModified: true}}, want: verdictRevalidated, wantHeadless: 405},
		{name: "HEAD without digest then GET same digest", ans: revalAnswer{Head: head(200, ""), Get: same}, want: verdictRevalidated, wantHeadless: 200},
		{name: "headless upstream: GET same digest", ans: revalAnswer{Get: same}, want: verdictRevalidated},
		// Moved.
		{name: "HEAD new digest asks GET", ans: revalAnswer{Head: head(200, movedDg)}, want: verdictAskGET},
		{name: "HEAD new digest then GET new digest", ans: revalAnswer{Head: head(200, movedDg), Get: moved}, want: verdictReplaced},
		{name: "HEAD 501 then GET new digest", ans: revalAnswer{Head: head(501, ""), Get: moved}, want: verdictReplaced, wantHeadless: 501},
		// Gone: only a GET's 404 says so.
		{name: "HEAD 404 alone is not gone", ans: revalAnswer{Head: head(404, "")}, want: verdictAskGET},
		{name: "HEAD 404 then GET same digest", ans: revalAnswer{Head: head(404, ""), Get: same}, want: verdictRevalidated, wantHeadless: 404},
		{name: "HEAD 404 then GET 404", ans: revalAnswer{Head: head(404, ""), Get: getAnswer{Kind: getNotFound}}, want: verdictGone},
		{name: "headless upstream: GET 404", ans: revalAnswer{Get: getAnswer{Kind: getNotFound}}, want: verdictGone},
		// Denied: a GET's 401/403 after the token flow.
		{name: "GET denied without grace", ans: revalAnswer{Head: head(403, ""), Get: getAnswer{Kind: getDenied}}, want: verdictDenied},
		{name: "GET denied within grace", pol: grace, now: checkedAt.Add(2*time.Hour - 1), ans: revalAnswer{Head: head(401, ""), Get: getAnswer{Kind: getDenied}}, want: verdictStale},
		{name: "GET denied exactly at the end of grace", pol: grace, now: checkedAt.Add(2 * time.Hour), ans: revalAnswer{Head: head(401, ""), Get: getAnswer{Kind: getDenied}}, want: verdictDenied},
		{name: "HEAD 401 then GET works", ans: revalAnswer{Head: head(401, ""), Get: same}, want: verdictRevalidated, wantHeadless: 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol, now := tc.pol, tc.now
			if pol == (cachePolicy{}) {
				pol = hourPolicy
			}
			if now.IsZero() {
				now = checkedAt.Add(time.Hour)
			}
			if got := pol.afterRevalidation(cachedTag, now, tc.ans); got != tc.want {
				t.Errorf("got verdict %s, want %s", got, tc.want)
			}
			if got := tc.ans.headlessStatus(); got != tc.wantHeadless {
				t.Errorf("got headless status %d, want %d", got, tc.wantHeadless)
			}
		})
	}
}

// TestTableGetAnswer: what an upstream's GET status becomes, through the
// one error mapping (upstreamError) the GET uses.
func TestTableGetAnswer(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   getKind
	}{
		{http.StatusNotFound, getNotFound},
		{http.StatusUnauthorized, getDenied},
		{http.StatusForbidden, getDenied},
		{http.StatusTooManyRequests, getFailed},
		{http.StatusInternalServerError, getFailed},
		{http.StatusBadGateway, getFailed},
		{http.StatusBadRequest, getFailed},
	} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			err := upstreamError(&http.Response{StatusCode: tc.status, Header: http.Header{}}, ErrManifestUnknown, checkedAt)
			if got := getAnswerOf(storedManifest{}, false, err).Kind; got != tc.want {
				t.Errorf("got kind %d, want %d", got, tc.want)
			}
		})
	}
	if got := getAnswerOf(storedManifest{}, false, errors.New("dial tcp: refused")).Kind; got != getFailed {
		t.Errorf("transport error: got kind %d, want %d (failed)", got, getFailed)
	}
	if got := getAnswerOf(storedManifest{}, true, nil); got.Kind != getOK || !got.NotModified {
		t.Errorf("304: got %+v, want ok, not modified", got)
	}
	if got := getAnswerOf(storedManifest{Digest: movedDg}, false, nil); got.Kind != getOK || got.Digest != movedDg {
		t.Errorf("200: got %+v, want ok with %s", got, movedDg)
	}
}

// fakeClock is a settable clock for the cache.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func newTestCache(cfg Config) (*cache, *fakeClock) {
	clock := &fakeClock{t: checkedAt}
	c := newCache(cfg, nil, slog.New(slog.DiscardHandler))
	c.now = clock.now
	return c, clock
}

// TestTableCacheClock: memo expiries and once-a-day use records, by the
// cache's clock, on both sides of each boundary.
func TestTableCacheClock(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after time.Duration // since the memo entry or the last use
		check func(c *cache) bool
		want  bool
	}{
		{"headless just before expiry", headlessFor - 1, func(c *cache) bool { return c.headless("reg.example") }, true},
		{"headless at expiry: HEAD is tried again", headlessFor, func(c *cache) bool { return c.headless("reg.example") }, false},
		{"presigned URL reused in the first half of its life", 15*time.Minute/2 - 1, func(c *cache) bool { _, ok := c.presignedURL("GET blobs/x"); return ok }, true},
		{"presigned URL re-signed at half its life", 15 * time.Minute / 2, func(c *cache) bool { _, ok := c.presignedURL("GET blobs/x"); return ok }, false},
		{"use not recorded twice in a day", useEvery - 1, func(c *cache) bool { return useDue(checkedAt, c.now()) }, false},
		{"use recorded again after a day", useEvery, func(c *cache) bool { return useDue(checkedAt, c.now()) }, true},
		{"tag memo fresh before the TTL", time.Hour - 1, func(c *cache) bool { _, ok := c.tags.get("k", c.now(), c.policy.ManifestTTL); return ok }, true},
		{"tag memo stale at the TTL", time.Hour, func(c *cache) bool { _, ok := c.tags.get("k", c.now(), c.policy.ManifestTTL); return ok }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, clock := newTestCache(Config{ManifestTTL: time.Hour, PresignTTL: 15 * time.Minute, MaxManifestSize: 1 << 10})
			c.noteHeadless("reg.example", http.StatusMethodNotAllowed)
			c.presigned.put("GET blobs/x", "https://signed", c.now())
			c.tags.put("k", cachedTag, c.now())
			clock.t = checkedAt.Add(tc.after)
			if got := tc.check(c); got != tc.want {
				t.Errorf("after %s: got %v, want %v", tc.after, got, tc.want)
			}
		})
	}
}

// TestTableManifestTTLZero: zero ManifestTTL means the default, as every
// other zero Config field does; RevalidateAlways asks every time.
func TestTableManifestTTLZero(t *testing.T) {
	up, err := NewUpstream(UpstreamConfig{Host: DockerHubHost, URL: DockerHubURL})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		ttl       time.Duration
		wantTTL   time.Duration
		wantFresh bool // one second after a check
	}{
		{"zero is the default", 0, DefaultManifestTTL, true},
		{"an hour", time.Hour, time.Hour, true},
		{"RevalidateAlways", RevalidateAlways, RevalidateAlways, false},
		{"any negative value", -time.Hour, -time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(Config{ManifestTTL: tc.ttl}, nil, []*Upstream{up}, nil)
			if err != nil {
				t.Fatal(err)
			}
			pol := p.cache.policy
			if pol.ManifestTTL != tc.wantTTL {
				t.Errorf("got ManifestTTL %s, want %s", pol.ManifestTTL, tc.wantTTL)
			}
			if got := pol.fresh(checkedAt, checkedAt.Add(time.Second)); got != tc.wantFresh {
				t.Errorf("got fresh %v a second after a check, want %v", got, tc.wantFresh)
			}
		})
	}
}

// TestTableTokenExpiry: a bearer token is reused up to its expiry by the
// upstream's clock, not after.
func TestTableTokenExpiry(t *testing.T) {
	for _, tc := range []struct {
		after time.Duration
		want  bool
	}{{0, true}, {50 * time.Second, true}, {50*time.Second + 1, false}} {
		var c tokenCache
		c.put("scope", "tok", checkedAt.Add(50*time.Second), checkedAt)
		if _, ok := c.get("scope", checkedAt.Add(tc.after)); ok != tc.want {
			t.Errorf("%s after issue (expires at 50s): got reuse %v, want %v", tc.after, ok, tc.want)
		}
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
		if got := leaseLive(leaseRecord{Owner: "a", Expires: exp}, tc.now); got != tc.want {
			t.Errorf("leaseLive at expiry%+v: got %v, want %v", tc.now.Sub(exp), got, tc.want)
		}
	}
}
