package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pullthrough/pullthrough/internal/field"
)

// env reads PULLTHROUGH_* variables into values and collects every problem,
// each naming its variable. It only parses: the rules a value must meet
// live in the Validate methods of the configs it fills, whose field errors
// fieldErrors renames to variables. It notes every name it was asked for,
// so that a set variable nothing read can be refused (unknownVars).
type env struct {
	vars map[string]string
	read map[string]bool
	errs []error
}

// getenv is the raw value of name, noted as read.
func (e *env) getenv(name string) string {
	if e.read == nil {
		e.read = map[string]bool{}
	}
	e.read[name] = true
	return e.vars[name]
}

func (e *env) bad(name, format string, args ...any) {
	e.errs = append(e.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

// err is every problem found so far, each once, joined; nil if none.
func (e *env) err() error {
	seen := map[string]bool{}
	var out []error
	for _, err := range e.errs {
		if !seen[err.Error()] {
			seen[err.Error()] = true
			out = append(out, err)
		}
	}
	return errors.Join(out...)
}

// get is the trimmed value of name, def when unset or blank.
func (e *env) get(name, def string) string {
	if v := strings.TrimSpace(e.getenv(name)); v != "" {
		return v
	}
	return def
}

// read parses name with parse, def when unset; a value parse refuses is
// reported as "want <want>, got <value>" and def is used.
func read[T any](e *env, name string, def T, parse func(string) (T, error), want string) T {
	v := e.get(name, "")
	if v == "" {
		return def
	}
	x, err := parse(v)
	if err != nil {
		e.bad(name, "want %s, got %q", want, v)
		return def
	}
	return x
}

// duration reads a non-negative Go duration (90s, 15m).
func (e *env) duration(name string, def time.Duration) time.Duration {
	return read(e, name, def, func(v string) (time.Duration, error) {
		d, err := time.ParseDuration(v)
		if err == nil && d < 0 {
			err = errors.New("negative")
		}
		return d, err
	}, "a non-negative Go duration such as 90s or 15m")
}

// integer reads a whole number.
func (e *env) integer(name string, def int) int {
	return read(e, name, def, strconv.Atoi, "a whole number")
}

// size reads a byte count with an optional binary unit (see parseSize).
func (e *env) size(name string, def int64) int64 {
	return read(e, name, def, parseSize, "a size such as 8MiB or 2GiB")
}

// boolean reads true/false (also 1/0, yes/no).
func (e *env) boolean(name string, def bool) bool {
	switch v := strings.ToLower(e.get(name, "")); v {
	case "":
		return def
	case "true", "1", "yes":
		return true
	case "false", "0", "no":
		return false
	default:
		e.bad(name, "want true or false, got %q", v)
		return def
	}
}

// fieldErrors adds the errors of a Validate method, each *field.Error
// renamed to the variable vars gives for its field: "PULLTHROUGH_FILL_LEASE_TTL:
// want at least 3s, got 1s". A field without a variable keeps its Go name.
func (e *env) fieldErrors(err error, vars map[string]string) {
	for _, one := range field.Flatten(err) {
		var fe *field.Error
		if errors.As(one, &fe) && vars[fe.Field] != "" {
			one = fmt.Errorf("%s: %w", vars[fe.Field], fe.Err)
		}
		e.errs = append(e.errs, one)
	}
}

// parseSize reads a byte count with an optional binary unit: 1048576,
// 512MiB, 2GiB.
func parseSize(v string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			v, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 || n > (1<<50)/mult {
		return 0, fmt.Errorf("bad size %q", v)
	}
	return n * mult, nil
}

// items is list(v) for the variable name, where a value that is set but
// names nothing ("," or " , ") is an error: read as unset it would
// silently lift a restriction (any host name, any source, any repository).
func (e *env) items(name, v string) []string {
	out := list(v)
	if v != "" && len(out) == 0 {
		e.bad(name, "want comma-separated entries, got only commas and blanks")
	}
	return out
}

// list splits a comma-separated value, dropping blanks.
func list(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// clientCredentials splits a comma-separated list of client credentials keeping
// blank entries, so that AccessConfig.Validate refuses them: "$A,$B" with
// $B unset must not quietly drop a credential, and "," must not leave open
// a mirror its operator meant to protect. "" gives none.
func clientCredentials(v string) []string {
	if v == "" {
		return nil
	}
	out := strings.Split(v, ",")
	for i := range out {
		out[i] = strings.TrimSpace(out[i])
	}
	return out
}
