package field_test

import (
	"errors"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/field"
)

// Nest prefixes the fields of a nested config's errors, through nested
// joins, and leaves other errors and nil alone.
func TestTableNest(t *testing.T) {
	plain := errors.New("not a field error")
	err := field.Nest("Access", errors.Join(
		field.Errorf("CIDRs", "x", "bad"),
		errors.Join(field.Errorf("Users", nil, "bad"), plain),
	))
	var got []string
	for _, e := range field.Flatten(err) {
		var fe *field.Error
		if errors.As(e, &fe) {
			got = append(got, fe.Error())
		} else {
			got = append(got, e.Error())
		}
	}
	want := []string{"Access.CIDRs: bad", "Access.Users: bad", "not a field error"}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("error %d: got %q, want %q", i, got[i], want[i])
		}
	}
	if field.Nest("X", nil) != nil {
		t.Errorf("Nest of nil: got an error, want nil")
	}
}

// Values are written the way the configuration and README write them.
func TestTableFormat(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{field.Duration(5 * time.Minute), "5m"},
		{field.Duration(168 * time.Hour), "168h"},
		{field.Duration(90 * time.Minute), "1h30m"},
		{field.Duration(1500 * time.Millisecond), "1.5s"},
		{field.Duration(0), "0s"},
		{field.Size(8 << 20), "8MiB"},
		{field.Size(10 << 30), "10GiB"},
		{field.Size(1536), "1536B"},
		{field.Size(0), "0B"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
