package store_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/store"
)

// Both stores can be swept.
var (
	_ proxy.Lister  = (*store.Filesystem)(nil)
	_ proxy.Lister  = (*store.S3)(nil)
	_ proxy.Deleter = (*store.Filesystem)(nil)
	_ proxy.Deleter = (*store.S3)(nil)
)

// listConformance is the listing and deleting behaviour every store has.
func listConformance(t *testing.T, open func(*testing.T) proxy.Store) {
	ctx := context.Background()
	list := func(t *testing.T, st proxy.Store, prefix string) []proxy.ObjectInfo {
		t.Helper()
		var out []proxy.ObjectInfo
		for o, err := range st.(proxy.Lister).List(ctx, prefix) {
			if err != nil {
				t.Fatalf("list %q: %v", prefix, err)
			}
			out = append(out, o)
		}
		slices.SortFunc(out, func(a, b proxy.ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
		return out
	}
	keys := func(os []proxy.ObjectInfo) []string {
		var out []string
		for _, o := range os {
			out = append(out, o.Key)
		}
		return out
	}

	t.Run("lists keys under a prefix with size and time", func(t *testing.T) {
		st := open(t)
		start := time.Now().Add(-time.Minute)
		objects := map[string]string{
			"blobs/sha256/aa":                 "12345",
			"blobs/sha256/bb":                 "1",
			"blobsx/sha256/cc":                "not under blobs/",
			"tags/docker.io/library/x/_tag/1": "{}",
		}
		for k, v := range objects {
			if err := st.Put(ctx, k, []byte(v)); err != nil {
				t.Fatal(err)
			}
		}
		// An upload in progress is not an object.
		up, err := st.Create(ctx, "blobs/sha256/cc")
		if err != nil {
			t.Fatal(err)
		}
		defer up.Abort(ctx)
		up.Write([]byte("partial"))

		got := list(t, st, "blobs/")
		if want := []string{"blobs/sha256/aa", "blobs/sha256/bb"}; !slices.Equal(keys(got), want) {
			t.Fatalf("got keys %v, want %v", keys(got), want)
		}
		for _, o := range got {
			if o.Size != int64(len(objects[o.Key])) {
				t.Errorf("%s: got size %d, want %d", o.Key, o.Size, len(objects[o.Key]))
			}
			if o.Modified.Before(start) || o.Modified.After(time.Now().Add(time.Minute)) {
				t.Errorf("%s: got modified %v, want about now", o.Key, o.Modified)
			}
		}
		if got := list(t, st, ""); len(got) != len(objects) {
			t.Errorf("whole store: got keys %v, want %d", keys(got), len(objects))
		}
		if got := list(t, st, "manifests/"); len(got) != 0 {
			t.Errorf("empty prefix: got %v, want none", keys(got))
		}
	})

	t.Run("lists more than one page", func(t *testing.T) {
		if testing.Short() {
			t.Skip("writes 1,001 objects")
		}
		st := open(t)
		const n = 1001 // S3 pages hold 1,000
		for i := range n {
			if err := st.Put(ctx, "links/h/r/_digest/sha256/"+fmt.Sprintf("%04d", i), []byte("{}")); err != nil {
				t.Fatal(err)
			}
		}
		if got := list(t, st, "links/"); len(got) != n {
			t.Errorf("got %d objects, want %d", len(got), n)
		}
	})

	t.Run("delete", func(t *testing.T) {
		st := open(t)
		if err := st.Put(ctx, "manifests/sha256/aa", []byte("{}")); err != nil {
			t.Fatal(err)
		}
		d := st.(proxy.Deleter)
		if err := d.Delete(ctx, "manifests/sha256/aa"); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Stat(ctx, "manifests/sha256/aa"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("after delete: got %v, want ErrNotExist", err)
		}
		if err := d.Delete(ctx, "manifests/sha256/aa"); err != nil {
			t.Errorf("deleting a missing object: got %v, want nil", err)
		}
		if err := d.Delete(ctx, "../escape"); err == nil {
			t.Errorf("invalid key: got nil error")
		}
	})
}
