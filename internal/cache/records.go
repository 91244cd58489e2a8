package cache

import (
	"encoding/json"
	"time"

	"github.com/opencontainers/go-digest"
)

// The records the cache keeps in the store (cache.go has their keys), as
// JSON. Their fields are the store's format: renaming one orphans every
// record written before.

// Manifest is the cache record of one manifest: exact upstream bytes
// and the media type they were served with. It is keyed by digest and so
// immutable.
type Manifest struct {
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
	Data      []byte        `json:"data"`
	// Used is when the record was last written for a pull: the fill, or a
	// later hit (use.go). Zero in records written before use was recorded.
	Used time.Time `json:"used,omitzero"`
}

// Tag maps a tag of one upstream repository to a manifest digest:
// what the upstream answers a client that accepts every manifest type.
type Tag struct {
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	ETag      string        `json:"etag,omitempty"`
	Checked   time.Time     `json:"checked"`
	// Used is when a hit was last recorded (use.go); a revalidation
	// (Checked) is a use too.
	Used time.Time `json:"used,omitzero"`
}

// Referrers caches the full (unfiltered) referrers index of one
// subject, so every artifactType filter is answered from one entry.
type Referrers struct {
	Checked time.Time       `json:"checked"`
	Index   json.RawMessage `json:"index"`
}

// LinkRecord is the content of a link object; the time is for operators.
type LinkRecord struct {
	Linked time.Time `json:"linked"`
}

// LeaseRecord is the content of a fill lease object.
type LeaseRecord struct {
	Owner   string    `json:"owner"`
	Expires time.Time `json:"expires"`
}

// FillFailure is the record of a failed background fill.
type FillFailure struct {
	At time.Time `json:"at"`
}
