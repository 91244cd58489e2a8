package proxy

import (
	"errors"
	"net/http"
	"time"

	"github.com/opencontainers/go-digest"
)

// cachePolicy is the part of Config that decides how long cached answers
// stay good.
type cachePolicy struct {
	// ManifestTTL is how long a tag (or referrers answer) is served before
	// it is revalidated; RevalidateAlways or any negative value: never.
	ManifestTTL time.Duration
	// DeniedGrace is how long after its last confirmation a tag the
	// upstream now denies is still served stale.
	DeniedGrace time.Duration
	// PresignTTL is the lifetime of a presigned URL.
	PresignTTL time.Duration
}

// fresh reports whether an answer the upstream confirmed at checked may
// be served at now without asking again: younger than ManifestTTL. A
// record from further in the future than that (an instance whose clock
// ran ahead, or a record edited by hand) is not fresh, or it would be
// served unchecked until that time came.
func (pol cachePolicy) fresh(checked, now time.Time) bool {
	age := now.Sub(checked)
	return pol.ManifestTTL > 0 && age < pol.ManifestTTL && age > -pol.ManifestTTL
}

// withinDeniedGrace reports whether a tag last confirmed at checked, which
// the upstream now denies, may still be served stale at now.
func (pol cachePolicy) withinDeniedGrace(checked, now time.Time) bool {
	return now.Sub(checked) < pol.DeniedGrace
}

// presignReuse is how long a presigned URL is handed out again: the first
// half of its life, so a client always gets one with time left.
func (pol cachePolicy) presignReuse() time.Duration { return pol.PresignTTL / 2 }

// useDue reports whether a hit at now is to be written down, the last
// recorded use being at last (see useEvery).
func useDue(last, now time.Time) bool { return now.Sub(last) >= useEvery }

// leaseLive reports whether a fill lease record still holds at now: up to
// and including its expiry. A fill takes over a lease that is not live
// (lease.go); the sweep keeps the blob of one that is (sweep.go).
func leaseLive(rec leaseRecord, now time.Time) bool { return !now.After(rec.Expires) }

// tagStep is what a request for a tag does with the record it found.
type tagStep int

const (
	tagServe      tagStep = iota // fresh: serve the cached manifest (hit)
	tagRevalidate                // expired: ask the upstream whether it moved
	tagFetch                     // no record: GET the tag
)

func (s tagStep) String() string { return [...]string{"serve", "revalidate", "fetch"}[s] }

// lookup decides a tag request from its record (found false: none).
func (pol cachePolicy) lookup(tr tagRecord, found bool, now time.Time) tagStep {
	switch {
	case !found:
		return tagFetch
	case pol.fresh(tr.Checked, now):
		return tagServe
	default:
		return tagRevalidate
	}
}

// headAnswer is what a manifest HEAD told a revalidation.
type headAnswer struct {
	Asked  bool          // false: not asked (the upstream is known headless)
	Failed bool          // no answer: unreachable, timed out
	Status int           // the HTTP status
	Digest digest.Digest // Docker-Content-Digest; "" if absent or invalid
}

// getKind is the outcome of a revalidating (conditional) manifest GET.
type getKind int

const (
	getNotAsked getKind = iota
	getOK               // 200 with verified bytes, or 304 Not Modified
	getNotFound         // 404: MANIFEST_UNKNOWN
	getDenied           // 401/403 after the token flow: DENIED
	getFailed           // anything else: 429, 5xx, unreachable, bad bytes
)

// getAnswer is what a revalidating GET told.
type getAnswer struct {
	Kind        getKind
	NotModified bool          // 304 to If-None-Match
	Digest      digest.Digest // the verified manifest's digest (Kind getOK, not 304)
}

// getAnswerOf summarises getManifest's results.
func getAnswerOf(m storedManifest, notModified bool, err error) getAnswer {
	var oe *Error
	switch {
	case err == nil:
		return getAnswer{Kind: getOK, NotModified: notModified, Digest: m.Digest}
	case errors.Is(err, ErrManifestUnknown):
		return getAnswer{Kind: getNotFound}
	case errors.As(err, &oe) && errors.Is(err, ErrDenied):
		return getAnswer{Kind: getDenied}
	default:
		return getAnswer{Kind: getFailed}
	}
}

// revalAnswer is everything the upstream said so far to the revalidation
// of one expired tag.
type revalAnswer struct {
	BackingOff bool // the upstream asked for a pause (Retry-After): not asked at all
	Head       headAnswer
	Get        getAnswer
}

// verdict is the outcome of a revalidation.
type verdict int

const (
	verdictAskGET      verdict = iota // undecided: ask with a conditional GET
	verdictRevalidated                // unchanged: serve the cached copy, now confirmed
	verdictStale                      // upstream trouble: serve the cached copy, stale
	verdictReplaced                   // moved: store and serve the new manifest
	verdictGone                       // the GET says 404: the tag is gone
	verdictDenied                     // the GET says DENIED, past DeniedGrace
)

func (v verdict) String() string {
	return [...]string{"ask-get", "revalidated", "stale", "replaced", "gone", "denied"}[v]
}

// afterRevalidation decides an expired tag from what the upstream said.
// A HEAD (not a counted pull on Docker Hub) settles it when it names the
// cached digest; upstream trouble (429, 5xx but 501, no answer) serves
// stale; anything else (405, 403, 404, 501, no digest, another digest)
// leaves it to a conditional GET, since some registries answer manifest
// HEAD so while GET works. Only a GET's 404 says the tag is gone, and only
// a GET's 401/403 after the token flow that access was revoked (deleted,
// taken down, made private): DENIED, unless within DeniedGrace of the
// last confirmation, because serving it stale would outlive the revocation
// forever.
func (pol cachePolicy) afterRevalidation(tr tagRecord, now time.Time, a revalAnswer) verdict {
	if a.BackingOff {
		return verdictStale
	}
	if h := a.Head; h.Asked {
		switch {
		case h.Failed:
			return verdictStale
		case h.Status == http.StatusOK && h.Digest == tr.Digest:
			return verdictRevalidated
		case h.Status == http.StatusTooManyRequests || (h.Status >= 500 && h.Status != http.StatusNotImplemented):
			return verdictStale
		}
	}
	switch g := a.Get; g.Kind {
	case getNotAsked:
		return verdictAskGET
	case getNotFound:
		return verdictGone
	case getDenied:
		if pol.withinDeniedGrace(tr.Checked, now) {
			return verdictStale
		}
		return verdictDenied
	case getFailed:
		return verdictStale
	default:
		if g.NotModified || g.Digest == tr.Digest {
			return verdictRevalidated
		}
		return verdictReplaced
	}
}

// headlessStatus is the status of a HEAD to remember the upstream as
// headless for (0: nothing to remember): one that did not settle the
// revalidation where the GET then worked. Remembered only then, so that an
// auth failure of both never moves a Docker Hub-like upstream to counted
// GETs.
func (a revalAnswer) headlessStatus() int {
	h := a.Head
	if !h.Asked || h.Failed || a.Get.Kind != getOK || (h.Status == http.StatusOK && h.Digest != "") {
		return 0
	}
	return h.Status
}

// headlessFor is how long an upstream whose manifest HEAD failed (or
// named no digest) where a GET then worked is revalidated with GET only,
// before HEAD is tried again.
const headlessFor = 6 * time.Hour
