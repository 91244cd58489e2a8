// Package field is the shape of a configuration error: which field of a
// config struct holds a bad value and which rule the value breaks. The
// Validate methods of proxy.Config, proxy.AccessConfig, proxy.UpstreamConfig
// and store.UploadTuning return these, joined with errors.Join; the binary
// maps each Field to the environment variable it read the value from, so a
// user sees "PULLTHROUGH_FILL_LEASE_TTL: want at least 3s, got 1s".
//
// It holds no rules itself: each rule lives in the Validate method of the
// config it constrains.
package field

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Error is one broken rule.
type Error struct {
	// Field is the Go path of the field in its config struct: "LeaseTTL",
	// "Access.CIDRs" (see Nest).
	Field string
	// Value is the offending value; nil when it is a secret (a token, a
	// password), which the message never repeats either.
	Value any
	// Err is the rule, phrased for a person who can change the value:
	// "want at least 3s, got 1s".
	Err error
}

func (e *Error) Error() string { return e.Field + ": " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an Error whose rule is the formatted text.
func Errorf(field string, value any, format string, args ...any) *Error {
	return &Error{Field: field, Value: value, Err: fmt.Errorf(format, args...)}
}

// Nest prefixes the Field of every Error in err with prefix and a dot, for a
// config nested in another (proxy.Config's Access). Other errors pass
// through; nil stays nil.
func Nest(prefix string, err error) error {
	var out []error
	for _, e := range Flatten(err) {
		var fe *Error
		if errors.As(e, &fe) {
			e = &Error{Field: prefix + "." + fe.Field, Value: fe.Value, Err: fe.Err}
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

// Flatten lists the errors joined in err (errors.Join, nested joins
// included), or err alone; nil gives none.
func Flatten(err error) []error {
	if err == nil {
		return nil
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, Flatten(e)...)
	}
	return out
}

// Duration writes d the way the configuration is written: 5m, 168h, 1h30m,
// 500ms (time.Duration.String without zero trailing units).
func Duration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Size writes a byte count with the largest binary unit that divides it:
// 8MiB, 5GiB, 1000B.
func Size(n int64) string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.mult == 0 {
			return fmt.Sprintf("%d%s", n/u.mult, u.suffix)
		}
	}
	return fmt.Sprintf("%dB", n)
}
