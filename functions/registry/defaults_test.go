package main

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/pullthrough/pullthrough/internal/field"
)

// documentedDefaults is what the binary uses for each variable left unset,
// written as README and Terraform write it, taken from parseConfig itself
// (which takes them from the Default* constants).
func documentedDefaults(t *testing.T) map[string]string {
	t.Helper()
	c, err := parseConfig(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	p := c.Proxy
	return map[string]string{
		"PULLTHROUGH_ADDR":                  c.Addr,
		"PULLTHROUGH_S3_PATH_STYLE":         strconv.FormatBool(c.S3PathStyle),
		"PULLTHROUGH_S3_PART_SIZE":          field.Size(int64(c.S3Upload.PartSize)),
		"PULLTHROUGH_S3_UPLOAD_CONCURRENCY": strconv.Itoa(c.S3Upload.Concurrency),
		"PULLTHROUGH_UPSTREAM":              c.Upstreams[0].URL,
		"PULLTHROUGH_MAX_CONNECTIONS":       strconv.Itoa(c.MaxConns),
		"PULLTHROUGH_HOSTS":                 strings.Join(p.Access.Hosts, ","),
		"PULLTHROUGH_MANIFEST_TTL":          field.Duration(p.ManifestTTL),
		"PULLTHROUGH_DENIED_GRACE":          field.Duration(p.DeniedGrace),
		"PULLTHROUGH_PRESIGN_TTL":           field.Duration(p.PresignTTL),
		"PULLTHROUGH_FILL_TIMEOUT":          field.Duration(p.FillTimeout),
		"PULLTHROUGH_FILL_LEASE_TTL":        field.Duration(p.LeaseTTL),
		"PULLTHROUGH_FILL_WAIT":             field.Duration(p.FillWait),
		"PULLTHROUGH_MAX_FILLS":             strconv.Itoa(p.MaxFills),
		"PULLTHROUGH_LARGE_BLOB_POLICY":     p.LargeBlobPolicy,
		"PULLTHROUGH_LARGE_BLOB_SIZE":       field.Size(p.LargeBlobSize),
		"PULLTHROUGH_MAX_BLOB_SIZE":         field.Size(p.MaxBlobSize),
		"PULLTHROUGH_FILL_PARTS":            strconv.Itoa(p.FillParts),
		"PULLTHROUGH_FILL_PART_SIZE":        field.Size(p.FillPartSize),
		"PULLTHROUGH_LOG_LEVEL":             c.LogLevel,
	}
}

// README's configuration table states the binary's defaults: each row
// "| `VAR`[, `VAR`] | `default`[, `default`] | ..." of a variable with a
// fixed default shows exactly it.
func TestReadmeDefaultsAreTheBinarys(t *testing.T) {
	want := documentedDefaults(t)
	_, section := readmeConfiguration(t)
	row := regexp.MustCompile("(?m)^\\| (`PULLTHROUGH_[^|]*) \\| ([^|]*) \\|")
	code := regexp.MustCompile("`([^`]*)`")
	seen := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		vars, defs := code.FindAllStringSubmatch(m[1], -1), code.FindAllStringSubmatch(m[2], -1)
		for i, v := range vars {
			w, ok := want[v[1]]
			if !ok {
				continue
			}
			seen[v[1]] = true
			if i >= len(defs) || defs[i][1] != w {
				t.Errorf("README: %s default column %q, want `%s`", v[1], strings.TrimSpace(m[2]), w)
			}
		}
	}
	for v := range want {
		if !seen[v] {
			t.Errorf("README's configuration table has no row for %s", v)
		}
	}
}

// The Terraform module's variables that set a PULLTHROUGH_* variable
// default to the binary's value, or say which default null keeps.
func TestTerraformDefaultsAreTheBinarys(t *testing.T) {
	want := documentedDefaults(t)
	tf, err := os.ReadFile("../../infra/terraform/variables.tf")
	if err != nil {
		t.Fatal(err)
	}
	envVar := regexp.MustCompile(`\((PULLTHROUGH_[A-Z_]+)[;)]`)
	def := regexp.MustCompile(`(?m)^\s*default\s*=\s*"([^"]*)"`)
	nullKeeps := regexp.MustCompile(`binary's default \(([^)]*)\)`)
	checked := 0
	for _, block := range strings.Split(string(tf), "\nvariable ")[1:] {
		name, _, _ := strings.Cut(block, " ")
		m := envVar.FindStringSubmatch(block)
		if m == nil || want[m[1]] == "" {
			continue
		}
		if d := def.FindStringSubmatch(block); d != nil {
			checked++
			if d[1] != want[m[1]] {
				t.Errorf("variable %s (%s): default %q, want %q", name, m[1], d[1], want[m[1]])
			}
		}
		if d := nullKeeps.FindStringSubmatch(block); d != nil {
			checked++
			if d[1] != want[m[1]] {
				t.Errorf("variable %s (%s): description says the binary's default is %q, want %q", name, m[1], d[1], want[m[1]])
			}
		}
	}
	if checked < 5 {
		t.Errorf("checked %d Terraform defaults, want at least 5: the parse of variables.tf broke", checked)
	}
}

// readmeConfiguration is README.md and its Configuration section.
func readmeConfiguration(t *testing.T) (readme, section string) {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ = strings.Cut(string(data), "\n## Configuration\n")
	section, _, _ = strings.Cut(section, "\n## ")
	return string(data), section
}
