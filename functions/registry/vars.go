package main

import (
	"slices"
	"strings"
)

// knownVars is every PULLTHROUGH_* variable the binary reads, besides the
// per-upstream PULLTHROUGH_UPSTREAM_<HOST>_<OPTION> (upstreamOptionNames):
// the catalogue a misspelled name is matched against. README's
// configuration table lists the same (TestReadmeListsEveryVariable).
var knownVars = []string{
	"PULLTHROUGH_ADDR",
	"PULLTHROUGH_STORE",
	"PULLTHROUGH_S3_PATH_STYLE",
	"PULLTHROUGH_S3_PART_SIZE",
	"PULLTHROUGH_S3_UPLOAD_CONCURRENCY",
	"PULLTHROUGH_UPSTREAMS",
	"PULLTHROUGH_UPSTREAM",
	"PULLTHROUGH_DEFAULT_UPSTREAM",
	"PULLTHROUGH_UPSTREAM_USERNAME",
	"PULLTHROUGH_UPSTREAM_PASSWORD",
	"PULLTHROUGH_UPSTREAM_TOKEN",
	"PULLTHROUGH_UPSTREAM_AUTH_HOSTS",
	"PULLTHROUGH_UPSTREAM_ALLOW",
	"PULLTHROUGH_UPSTREAM_DENY",
	"PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET",
	"PULLTHROUGH_CLIENT_TOKENS",
	"PULLTHROUGH_CLIENT_USERS",
	"PULLTHROUGH_CLIENT_CIDRS",
	"PULLTHROUGH_ALLOW_OPEN",
	"PULLTHROUGH_MAX_CONNECTIONS",
	"PULLTHROUGH_HOSTS",
	"PULLTHROUGH_MANIFEST_TTL",
	"PULLTHROUGH_DENIED_GRACE",
	"PULLTHROUGH_PRESIGN_TTL",
	"PULLTHROUGH_FILL_TIMEOUT",
	"PULLTHROUGH_FILL_LEASE_TTL",
	"PULLTHROUGH_FILL_WAIT",
	"PULLTHROUGH_MAX_FILLS",
	"PULLTHROUGH_LARGE_BLOB_POLICY",
	"PULLTHROUGH_LARGE_BLOB_SIZE",
	"PULLTHROUGH_MAX_BLOB_SIZE",
	"PULLTHROUGH_FILL_PARTS",
	"PULLTHROUGH_FILL_PART_SIZE",
	"PULLTHROUGH_SPOOL_DIR",
	"PULLTHROUGH_RETENTION",
	"PULLTHROUGH_LOG_LEVEL",
	// pullthrough doctor's defaults for --token and --user.
	"PULLTHROUGH_DOCTOR_TOKEN",
	"PULLTHROUGH_DOCTOR_USER",
}

// toolingVars belong to the repository's own scripts and tests (the
// Makefile exports PULLTHROUGH_TOOLS to `make run`): set in a developer's
// shell, they are not the server's configuration and are left alone.
var toolingVars = []string{
	"PULLTHROUGH_TOOLS", "PULLTHROUGH_BENCH", "PULLTHROUGH_KEEP_TMP", "PULLTHROUGH_PACKAGE",
	"PULLTHROUGH_SMOKE_MIRROR", "PULLTHROUGH_SMOKE_IMAGE", "PULLTHROUGH_SMOKE_NS",
	"PULLTHROUGH_TF_HOOK", "PULLTHROUGH_TF_ENV_OUT", "PULLTHROUGH_LOCALSTACK_STATE", "PULLTHROUGH_SKIP_APT",
}

// upstreamOptionNames are the <OPTION>s of PULLTHROUGH_UPSTREAM_<HOST>_<OPTION>
// (and of the un-keyed PULLTHROUGH_UPSTREAM_<OPTION>), longest first so
// that AUTH_HOSTS is not read as a host ending in _AUTH.
var upstreamOptionNames = []string{"AUTH_HOSTS", "USERNAME", "PASSWORD", "TOKEN", "ALLOW", "DENY"}

// unknownVars reports each set PULLTHROUGH_* variable that parsing did not
// read and no other part of the binary reads: a misspelled name would
// otherwise leave its setting at the default, silently. A per-upstream
// variable whose host is not a configured upstream is refused as the
// credentials secret refuses one.
func unknownVars(e *env, upstreamKeys []string) {
	var names []string
	for name := range e.vars {
		if strings.HasPrefix(name, "PULLTHROUGH_") && !e.read[name] && !slices.Contains(knownVars, name) && !slices.Contains(toolingVars, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		if key, opt, ok := upstreamVar(name); ok {
			e.bad(name, "%s is not a configured upstream (configured: %s); add its host to PULLTHROUGH_UPSTREAMS, or set PULLTHROUGH_UPSTREAM_<HOST>_%s for one of those",
				key, strings.Join(upstreamKeys, ", "), opt)
			continue
		}
		if near := closest(name); near != "" {
			e.bad(name, "unknown variable; did you mean %s?", near)
			continue
		}
		e.bad(name, "unknown variable (README.md, Configuration, lists them)")
	}
}

// upstreamVar splits PULLTHROUGH_UPSTREAM_<HOST>_<OPTION> into the host
// key and the option.
func upstreamVar(name string) (key, option string, ok bool) {
	rest, ok := strings.CutPrefix(name, "PULLTHROUGH_UPSTREAM_")
	if !ok {
		return "", "", false
	}
	for _, opt := range upstreamOptionNames {
		if key, ok := strings.CutSuffix(rest, "_"+opt); ok && key != "" {
			return key, opt, true
		}
	}
	return "", "", false
}

// closest is the known variable nearest to name, if one is near enough to
// be a slip of the keyboard (at most a third of the name's own part
// wrong, by edit distance with transpositions), or names the same setting
// without a word (PULLTHROUGH_TOKENS for PULLTHROUGH_CLIENT_TOKENS).
func closest(name string) string {
	own := strings.TrimPrefix(name, "PULLTHROUGH_")
	best, bestD := "", len(own)/3+1
	for _, k := range knownVars {
		if d := editDistance(own, strings.TrimPrefix(k, "PULLTHROUGH_")); d < bestD {
			best, bestD = k, d
		}
	}
	if best != "" {
		return best
	}
	for _, k := range knownVars {
		if strings.HasSuffix(k, "_"+own) {
			return k
		}
	}
	return ""
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of adjacent letters
// (UPSTRAEMS is one edit from UPSTREAMS).
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// environ is the process environment as parseConfig takes it.
func environ(kv []string) map[string]string {
	m := make(map[string]string, len(kv))
	for _, s := range kv {
		if k, v, ok := strings.Cut(s, "="); ok {
			m[k] = v
		}
	}
	return m
}
