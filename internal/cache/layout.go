package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
)

// LayoutVersion is the version of the store layout this binary reads and
// writes: the keys in the package documentation and the records' formats.
//
//	1  the layout of the first releases
//	2  schema 1 manifest records kept per upstream (manifests/_upstream/<host>/)
//
// A binary reads any layout up to its own and records its own when it is
// newer; it refuses a store whose recorded layout is newer than it knows
// (README "Upgrading").
const LayoutVersion = 2

// layoutKey is where the layout version is recorded.
const layoutKey = "layout.json"

type layoutRecord struct {
	Version   int    `json:"version"`
	WrittenBy string `json:"written_by,omitempty"`
}

// ErrLayoutTooNew is a store written by a newer binary than this one.
var ErrLayoutTooNew = errors.New("the store's layout is newer than this binary knows")

// CheckLayout reads the store's layout version and records LayoutVersion
// (by writtenBy, a version string) when none is recorded or it is older:
// one read per start, and a write only on a store's first start or
// upgrade. A newer layout is ErrLayoutTooNew.
func CheckLayout(ctx context.Context, st Store, writtenBy string) error {
	c := New(Policy{}, 0, st, nil)
	var rec layoutRecord
	err := c.LoadJSON(ctx, layoutKey, &rec)
	switch {
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("read the store layout version: %w", err)
	case rec.Version > LayoutVersion:
		return fmt.Errorf("%w: layout %d (written by %s), this binary knows up to %d: run a newer release", ErrLayoutTooNew, rec.Version, rec.WrittenBy, LayoutVersion)
	case rec.Version == LayoutVersion:
		return nil
	}
	if err := c.SaveJSON(ctx, layoutKey, layoutRecord{Version: LayoutVersion, WrittenBy: writtenBy}); err != nil {
		return fmt.Errorf("record the store layout version: %w", err)
	}
	return nil
}
