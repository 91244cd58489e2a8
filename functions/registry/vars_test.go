package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// README's configuration section documents every variable the binary
// knows, and knows every variable it documents: a name missing from the
// catalogue would be refused at start although README offers it.
func TestReadmeListsEveryVariable(t *testing.T) {
	readme, section := readmeConfiguration(t)
	for _, name := range regexp.MustCompile(`PULLTHROUGH_[A-Z0-9_]*[A-Z0-9]`).FindAllString(section, -1) {
		// The misspelling in the example of the error, and the scripts' own.
		if !slices.Contains(knownVars, name) && name != "PULLTHROUGH_UPSTRAEMS" && !slices.Contains(toolingVars, name) {
			t.Errorf("README's configuration section names %s, which the binary does not know", name)
		}
	}
	for _, name := range knownVars {
		where := section
		if strings.HasPrefix(name, "PULLTHROUGH_DOCTOR_") {
			where = readme // doctor's, documented with doctor
		}
		_, opt, _ := strings.Cut(name, "PULLTHROUGH_UPSTREAM_")
		if !strings.Contains(where, "`"+name+"`") && !(slices.Contains(upstreamOptionNames, opt) && (strings.Contains(where, "_<HOST>_"+opt+"`") || strings.Contains(where, "`_"+opt+"`"))) {
			t.Errorf("README does not document %s", name)
		}
	}
}

// The repository's scripts set only variables the binary reads or knows
// to leave alone: `make run` with them exported must start.
func TestScriptsSetOnlyKnownVariables(t *testing.T) {
	name := regexp.MustCompile(`PULLTHROUGH_[A-Z0-9_]*[A-Z0-9]`)
	checked := 0
	for _, root := range []string{"../../Makefile", "../../scripts", "../../localstack", "../../infra/test"} {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".sh") || filepath.Base(path) == "Makefile") {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			checked++
			for _, v := range name.FindAllString(string(data), -1) {
				if !slices.Contains(knownVars, v) && !slices.Contains(toolingVars, v) {
					t.Errorf("%s uses %s, which the binary would refuse as unknown", path, v)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if checked < 3 {
		t.Errorf("checked %d scripts, want at least 3: the walk broke", checked)
	}
}

func TestClosestVariable(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"PULLTHROUGH_UPSTRAEMS", "PULLTHROUGH_UPSTREAMS"},
		{"PULLTHROUGH_MANIFST_TTL", "PULLTHROUGH_MANIFEST_TTL"},
		{"PULLTHROUGH_STROE", "PULLTHROUGH_STORE"},
		{"PULLTHROUGH_LOGLEVEL", "PULLTHROUGH_LOG_LEVEL"},
		{"PULLTHROUGH_CLIENT_TOKEN", "PULLTHROUGH_CLIENT_TOKENS"},
		{"PULLTHROUGH_FILL_PART", "PULLTHROUGH_FILL_PARTS"},
		{"PULLTHROUGH_CIDRS", "PULLTHROUGH_CLIENT_CIDRS"},
		{"PULLTHROUGH_FROBNICATE", ""},
		{"PULLTHROUGH_X", ""},
	} {
		if got := closest(tc.name); got != tc.want {
			t.Errorf("closest(%s): got %q, want %q", tc.name, got, tc.want)
		}
	}
}
