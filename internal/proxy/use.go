package proxy

import (
	"context"
	"time"
)

// Use records. The sweep (sweep.go) keeps what was pulled within the
// retention and deletes the rest, so hits must leave a trace in the store.
// A trace costs a PUT, and a warm pull must stay cheap: a manifest record
// (by digest) or tag record carries the time it was last recorded as used,
// and a hit rewrites it only when that is at least useEvery old. Per
// process that is at most one write per manifest or tag per day however
// many hits it serves; processes learn each other's writes when their
// memos reload (an hour for manifests, the manifest TTL for tags), so
// several Lambda instances may each write once on the same day.
//
// Writing a manifest record again also puts it back if it was deleted
// behind the mirror's back while this process still served it from memory.

// useEvery is the granularity of use records. The sweep's retention must
// be longer (see MinRetention): a pull may be recorded up to a day late.
const useEvery = 24 * time.Hour

// lastUse is when a tag was last confirmed upstream or recorded as used.
func (tr tagRecord) lastUse() time.Time {
	if tr.Used.After(tr.Checked) {
		return tr.Used
	}
	return tr.Checked
}

// noteTagUse records a hit on a tag unless a record from the last day says
// so already. A failure is logged: it only makes the sweep think the tag
// older than it is, at worst refetched later.
func (c *cache) noteTagUse(ctx context.Context, key string, tr tagRecord) {
	now := c.now()
	if !useDue(tr.lastUse(), now) {
		return
	}
	tr.Used = now.UTC()
	if err := c.saveTag(ctx, key, tr); err != nil {
		c.log.Warn("could not record tag use", "cause", errString(err))
	}
}

// noteManifestUse records a hit on a manifest by digest, at most once a
// day (see useEvery), and returns the record as now stored.
func (c *cache) noteManifestUse(ctx context.Context, m storedManifest) storedManifest {
	now := c.now()
	if !useDue(m.Used, now) {
		return m
	}
	m.Used = now.UTC()
	if err := c.saveManifest(ctx, m); err != nil {
		c.log.Warn("could not record manifest use", "digest", m.Digest.String(), "cause", errString(err))
		return m
	}
	if len(m.Data) <= memoManifestMax {
		c.manifests.put(m.Digest, m, now)
	}
	return m
}
