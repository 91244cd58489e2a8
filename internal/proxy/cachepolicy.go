package proxy

import "time"

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
// be served at now without asking again: younger than ManifestTTL.
func (pol cachePolicy) fresh(checked, now time.Time) bool {
	return pol.ManifestTTL > 0 && now.Sub(checked) < pol.ManifestTTL
}
