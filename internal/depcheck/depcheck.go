// Package depcheck enforces the arrows between the mirror's packages: a
// package's test calls AssertOnly with the non-standard packages it may
// depend on, directly or not, and fails on any other (go-containerregistry's
// pkg/registry/depcheck_test.go does the same for its registry). It uses
// only the go command, so a test binary that calls it stays small.
package depcheck

import (
	"os/exec"
	"strings"
	"testing"
)

// AssertOnly fails t if the package in the current directory depends on a
// package outside the standard library that is neither itself nor under
// one of the allowed import-path prefixes ("github.com/opencontainers/go-digest",
// "github.com/pullthrough/pullthrough/internal/oci"). A prefix matches the
// path itself and the paths below it.
func AssertOnly(t *testing.T, allowed ...string) {
	t.Helper()
	self, deps := list(t)
	for _, dep := range deps {
		if dep != self && !under(dep, allowed) {
			t.Errorf("%s depends on %s, which its allow-list does not name", self, dep)
		}
	}
}

// list returns the package's import path and its non-standard
// dependencies (not counting tests).
func list(t *testing.T) (string, []string) {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	self := strings.TrimSpace(string(out))
	out, err = exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	return self, strings.Fields(string(out))
}

func under(path string, prefixes []string) bool {
	for _, p := range prefixes {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}
