package cache

import (
	"context"
	"time"
)

// Use records. The sweep (package sweep) keeps what was pulled within the
// retention and deletes the rest, so hits must leave a trace in the store.
// A trace costs a PUT, and a warm pull must stay cheap: a manifest record
// (by digest) or tag record carries the time it was last recorded as used,
// and a hit rewrites it only when that is at least UseEvery old. Per
// process that is at most one write per manifest or tag per day however
// many hits it serves; processes learn each other's writes when their
// memos reload (an hour for manifests, the manifest TTL for tags), so
// several Lambda instances may each write once on the same day.
//
// Writing a manifest record again also puts it back if it was deleted
// behind the mirror's back while this process still served it from memory.

// UseEvery is the granularity of use records. The sweep's retention must
// be longer (see MinRetention): a pull may be recorded up to a day late.
const UseEvery = 24 * time.Hour

// LastUse is when a tag was last confirmed upstream or recorded as used.
func (tr Tag) LastUse() time.Time {
	if tr.Used.After(tr.Checked) {
		return tr.Used
	}
	return tr.Checked
}

// NoteTagUse records a hit on a tag unless a record from the last day says
// so already. A failure is logged: it only makes the sweep think the tag
// older than it is, at worst refetched later.
func (c *Cache) NoteTagUse(ctx context.Context, key string, tr Tag) {
	now := c.now()
	if !UseDue(tr.LastUse(), now) {
		return
	}
	tr.Used = now.UTC()
	if err := c.SaveTag(ctx, key, tr); err != nil {
		c.log.Warn("could not record tag use", "cause", err.Error())
	}
}

// NoteManifestUse records a hit on a manifest by digest, at most once a
// day (see UseEvery), and returns the record as now stored.
func (c *Cache) NoteManifestUse(ctx context.Context, host string, m Manifest) Manifest {
	now := c.now()
	if !UseDue(m.Used, now) {
		return m
	}
	m.Used = now.UTC()
	if err := c.SaveManifest(ctx, host, m); err != nil {
		c.log.Warn("could not record manifest use", "digest", m.Digest.String(), "cause", err.Error())
		return m
	}
	if len(m.Data) <= memoManifestMax {
		c.manifests.Put(manifestKeyFor(host, m), m, now)
	}
	return m
}
