package cache

import (
	"net/http"
	"time"

	"github.com/opencontainers/go-digest"
)

// Policy is the part of Config that decides how long cached answers
// stay good.
type Policy struct {
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
func (pol Policy) Fresh(checked, now time.Time) bool {
	age := now.Sub(checked)
	return pol.ManifestTTL > 0 && age < pol.ManifestTTL && age > -pol.ManifestTTL
}

// WithinDeniedGrace reports whether a tag last confirmed at checked, which
// the upstream now denies, may still be served stale at now.
func (pol Policy) WithinDeniedGrace(checked, now time.Time) bool {
	return now.Sub(checked) < pol.DeniedGrace
}

// PresignReuse is how long a presigned URL is handed out again: the first
// half of its life, so a client always gets one with time left.
func (pol Policy) PresignReuse() time.Duration { return pol.PresignTTL / 2 }

// UseDue reports whether a hit at now is to be written down, the last
// recorded use being at last (see UseEvery).
func UseDue(last, now time.Time) bool { return now.Sub(last) >= UseEvery }

// LeaseLive reports whether a fill lease record still holds at now: up to
// and including its expiry. A fill takes over a lease that is not live
// (package fill); the sweep keeps the blob of one that is (package sweep).
func LeaseLive(rec LeaseRecord, now time.Time) bool { return !now.After(rec.Expires) }

// TagStep is what a request for a tag does with the record it found.
type TagStep int

const (
	TagServe      TagStep = iota // fresh: serve the cached manifest (hit)
	TagRevalidate                // expired: ask the upstream whether it moved
	TagFetch                     // no record: GET the tag
)

func (s TagStep) String() string { return [...]string{"serve", "revalidate", "fetch"}[s] }

// lookup decides a tag request from its record (found false: none).
func (pol Policy) Lookup(tr Tag, found bool, now time.Time) TagStep {
	switch {
	case !found:
		return TagFetch
	case pol.Fresh(tr.Checked, now):
		return TagServe
	default:
		return TagRevalidate
	}
}

// HeadAnswer is what a manifest HEAD told a revalidation.
type HeadAnswer struct {
	Asked  bool          // false: not asked (the upstream is known headless)
	Failed bool          // no answer: unreachable, timed out
	Status int           // the HTTP status
	Digest digest.Digest // Docker-Content-Digest; "" if absent or invalid
}

// GetKind is the outcome of a revalidating (conditional) manifest GET.
type GetKind int

const (
	GetNotAsked GetKind = iota
	GetOK               // 200 with verified bytes, or 304 Not Modified
	GetGone             // the registry said it is gone (GoneStatus): MANIFEST_UNKNOWN
	GetDenied           // the registry's own 401/403 after the token flow: DENIED
	GetFailed           // anything else: 429, 5xx, unreachable, bad bytes, an answer not the registry's
)

// GoneStatus reports whether a registry's status for a manifest GET ends a
// cached tag's serving: 404 Not Found, 410 Gone (RFC 9110 section 15.5.11:
// "no longer available ... likely to be permanent") and 451 Unavailable For
// Legal Reasons (RFC 7725: taken down, and serving a copy would be the very
// thing the takedown forbids). Only transient trouble (GetFailed) is served
// stale.
func GoneStatus(status int) bool {
	switch status {
	case http.StatusNotFound, http.StatusGone, http.StatusUnavailableForLegalReasons:
		return true
	}
	return false
}

// GetAnswer is what a revalidating GET told.
type GetAnswer struct {
	Kind        GetKind
	NotModified bool          // 304 to If-None-Match
	Digest      digest.Digest // the verified manifest's digest (Kind GetOK, not 304)
}

// RevalAnswer is everything the upstream said so far to the revalidation
// of one expired tag.
type RevalAnswer struct {
	BackingOff bool // the upstream asked for a pause (Retry-After): not asked at all
	Head       HeadAnswer
	Get        GetAnswer
}

// Verdict is the outcome of a revalidation.
type Verdict int

const (
	VerdictAskGET      Verdict = iota // undecided: ask with a conditional GET
	VerdictRevalidated                // unchanged: serve the cached copy, now confirmed
	VerdictStale                      // upstream trouble: serve the cached copy, stale
	VerdictReplaced                   // moved: store and serve the new manifest
	VerdictGone                       // the GET says 404, 410 or 451: the tag is gone
	VerdictDenied                     // the GET says DENIED, past DeniedGrace
)

func (v Verdict) String() string {
	return [...]string{"ask-get", "revalidated", "stale", "replaced", "gone", "denied"}[v]
}

// AfterRevalidation decides an expired tag from what the upstream said.
// A HEAD (not a counted pull on Docker Hub) settles it when it names the
// cached digest; upstream trouble (429, 5xx but 501, no answer) serves
// stale; anything else (405, 403, 404, 501, no digest, another digest)
// leaves it to a conditional GET, since some registries answer manifest
// HEAD so while GET works. Only a GET's 404, 410 or 451 (GoneStatus) says
// the tag is gone, and only
// a GET's 401/403 after the token flow that access was revoked (deleted,
// taken down, made private): DENIED, unless within DeniedGrace of the
// last confirmation, because serving it stale would outlive the revocation
// forever.
func (pol Policy) AfterRevalidation(tr Tag, now time.Time, a RevalAnswer) Verdict {
	if a.BackingOff {
		return VerdictStale
	}
	if h := a.Head; h.Asked {
		switch {
		case h.Failed:
			return VerdictStale
		case h.Status == http.StatusOK && h.Digest == tr.Digest:
			return VerdictRevalidated
		case h.Status == http.StatusTooManyRequests || (h.Status >= 500 && h.Status != http.StatusNotImplemented):
			return VerdictStale
		}
	}
	switch g := a.Get; g.Kind {
	case GetNotAsked:
		return VerdictAskGET
	case GetGone:
		return VerdictGone
	case GetDenied:
		if pol.WithinDeniedGrace(tr.Checked, now) {
			return VerdictStale
		}
		return VerdictDenied
	case GetFailed:
		return VerdictStale
	default:
		if g.NotModified || g.Digest == tr.Digest {
			return VerdictRevalidated
		}
		return VerdictReplaced
	}
}

// HeadlessStatus is the status of a HEAD to remember the upstream as
// headless for (0: nothing to remember): one that did not settle the
// revalidation where the GET then worked. Remembered only then, so that an
// auth failure of both never moves a Docker Hub-like upstream to counted
// GETs.
func (a RevalAnswer) HeadlessStatus() int {
	h := a.Head
	if !h.Asked || h.Failed || a.Get.Kind != GetOK || (h.Status == http.StatusOK && h.Digest != "") {
		return 0
	}
	return h.Status
}

// RevalidateAlways as Policy.ManifestTTL asks the upstream about a tag on
// every request.
const RevalidateAlways time.Duration = -1
