package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		check   func(t *testing.T, c Config)
		wantErr []string // each must appear in the error
	}{
		{
			name: "defaults",
			env:  map[string]string{},
			check: func(t *testing.T, c Config) {
				if c.Addr != "127.0.0.1:5000" || len(c.Upstreams) != 1 || c.Upstreams[0].URL != "https://registry-1.docker.io" || c.Upstreams[0].Host != "docker.io" {
					t.Errorf("got addr %q upstreams %+v", c.Addr, c.Upstreams)
				}
				if !strings.HasPrefix(c.Store, "file://") || c.Proxy.ManifestTTL != 5*time.Minute || c.Proxy.PresignTTL != 15*time.Minute || c.Lambda {
					t.Errorf("got store %q ttl %s presign %s lambda %v", c.Store, c.Proxy.ManifestTTL, c.Proxy.PresignTTL, c.Lambda)
				}
				if h := c.Proxy.Access.Hosts; len(h) != 1 || h[0] != "localhost" {
					t.Errorf("got local server hosts %v, want [localhost]", h)
				}
			},
		},
		{
			name: "everything set",
			env: map[string]string{
				"PULLTHROUGH_ADDR": "0.0.0.0:8080", "PULLTHROUGH_STORE": "s3://my-bucket/cache/", "PULLTHROUGH_S3_PATH_STYLE": "true",
				"PULLTHROUGH_UPSTREAM": "https://registry.example:5000", "PULLTHROUGH_UPSTREAM_USERNAME": "u", "PULLTHROUGH_UPSTREAM_PASSWORD": "p",
				"PULLTHROUGH_MANIFEST_TTL": "0s", "PULLTHROUGH_PRESIGN_TTL": "5m", "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
				"PULLTHROUGH_UPSTREAM_AUTH_HOSTS": "auth.example, token.example", "PULLTHROUGH_DENIED_GRACE": "2h",
			},
			check: func(t *testing.T, c Config) {
				if c.Store != "s3://my-bucket/cache/" || !c.S3PathStyle || c.Proxy.ManifestTTL >= 0 || c.Proxy.PresignTTL != 5*time.Minute || !c.Lambda || c.Proxy.DeniedGrace != 2*time.Hour {
					t.Errorf("got %+v", c)
				}
				if u := c.Upstreams[0]; u.Host != "registry.example:5000" || u.Username != "u" || len(u.AuthHosts) != 2 || u.AuthHosts[1] != "token.example" {
					t.Errorf("got upstream %+v", u)
				}
				if h := c.Proxy.Access.Hosts; h != nil {
					t.Errorf("got hosts %v under Lambda, want none (any Host)", h)
				}
			},
		},
		{
			name: "fill cap",
			env:  map[string]string{"PULLTHROUGH_MAX_FILLS": "3"},
			check: func(t *testing.T, c Config) {
				if c.Proxy.MaxFills != 3 {
					t.Errorf("got MaxFills %d, want 3", c.Proxy.MaxFills)
				}
			},
		},
		{
			name: "fill cap default",
			env:  map[string]string{},
			check: func(t *testing.T, c Config) {
				if c.Proxy.MaxFills != 16 {
					t.Errorf("got MaxFills %d, want 16", c.Proxy.MaxFills)
				}
			},
		},
		{
			name: "parallel fill parts",
			env:  map[string]string{"PULLTHROUGH_FILL_PARTS": "1", "PULLTHROUGH_FILL_PART_SIZE": "16MiB"},
			check: func(t *testing.T, c Config) {
				if c.Proxy.FillParts != 1 || c.Proxy.FillPartSize != 16<<20 {
					t.Errorf("got FillParts %d FillPartSize %d, want 1 and 16 MiB", c.Proxy.FillParts, c.Proxy.FillPartSize)
				}
			},
		},
		{
			name: "blob size cap default",
			env:  map[string]string{},
			check: func(t *testing.T, c Config) {
				if c.Proxy.MaxBlobSize != 10<<30 {
					t.Errorf("got MaxBlobSize %d, want 10 GiB", c.Proxy.MaxBlobSize)
				}
			},
		},
		{
			name: "blob size cap set",
			env:  map[string]string{"PULLTHROUGH_MAX_BLOB_SIZE": "512MiB"},
			check: func(t *testing.T, c Config) {
				if c.Proxy.MaxBlobSize != 512<<20 {
					t.Errorf("got MaxBlobSize %d, want 512 MiB", c.Proxy.MaxBlobSize)
				}
			},
		},
		{
			name: "blob size cap off",
			env:  map[string]string{"PULLTHROUGH_MAX_BLOB_SIZE": "0"},
			check: func(t *testing.T, c Config) {
				if c.Proxy.MaxBlobSize != 0 {
					t.Errorf("got MaxBlobSize %d, want 0 (no cap)", c.Proxy.MaxBlobSize)
				}
			},
		},
		{name: "bad blob size cap", env: map[string]string{"PULLTHROUGH_MAX_BLOB_SIZE": "10GB"}, wantErr: []string{"PULLTHROUGH_MAX_BLOB_SIZE"}},
		{
			name:    "parallel fill parts out of range",
			env:     map[string]string{"PULLTHROUGH_FILL_PARTS": "0", "PULLTHROUGH_FILL_PART_SIZE": "1KiB"},
			wantErr: []string{"PULLTHROUGH_FILL_PARTS", "PULLTHROUGH_FILL_PART_SIZE"},
		},
		{
			name:    "fill cap out of range",
			env:     map[string]string{"PULLTHROUGH_MAX_FILLS": "0"},
			wantErr: []string{"PULLTHROUGH_MAX_FILLS"},
		},
		{
			name: "every problem at once",
			env: map[string]string{
				"PULLTHROUGH_STORE": "ftp://x", "PULLTHROUGH_MANIFEST_TTL": "soon", "PULLTHROUGH_PRESIGN_TTL": "-1s",
				"PULLTHROUGH_UPSTREAM": "registry.example", "PULLTHROUGH_S3_PATH_STYLE": "maybe",
			},
			wantErr: []string{"PULLTHROUGH_STORE", "PULLTHROUGH_MANIFEST_TTL", "PULLTHROUGH_PRESIGN_TTL", "PULLTHROUGH_UPSTREAM:", "PULLTHROUGH_S3_PATH_STYLE"},
		},
		{
			name: "several upstreams with keyed options and client access",
			env: map[string]string{
				"PULLTHROUGH_UPSTREAMS":         "docker.io, ghcr.io, quay.io=https://quay.example",
				"PULLTHROUGH_UPSTREAM_USERNAME": "hubuser", "PULLTHROUGH_UPSTREAM_PASSWORD": "hubpass",
				"PULLTHROUGH_UPSTREAM_GHCR_IO_TOKEN": "ghcr-token",
				"PULLTHROUGH_UPSTREAM_GHCR_IO_ALLOW": "myorg/**",
				"PULLTHROUGH_UPSTREAM_QUAY_IO_DENY":  "bad/*, worse/*",
				"PULLTHROUGH_DEFAULT_UPSTREAM":       "ghcr.io",
				"PULLTHROUGH_CLIENT_TOKENS":          "t1,t2",
				"PULLTHROUGH_CLIENT_USERS":           "ci:pw",
				"PULLTHROUGH_CLIENT_CIDRS":           "10.0.0.0/8, 192.0.2.7",
			},
			check: func(t *testing.T, c Config) {
				if len(c.Upstreams) != 3 {
					t.Fatalf("got %d upstreams, want 3", len(c.Upstreams))
				}
				hub, ghcr, quay := c.Upstreams[0], c.Upstreams[1], c.Upstreams[2]
				if hub.URL != "https://registry-1.docker.io" || hub.Username != "hubuser" {
					t.Errorf("docker.io: got %+v", hub)
				}
				if ghcr.URL != "https://ghcr.io" || ghcr.Token != "ghcr-token" || ghcr.Username != "" || len(ghcr.Allow) != 1 {
					t.Errorf("ghcr.io: got %+v", ghcr)
				}
				if quay.URL != "https://quay.example" || len(quay.Deny) != 2 {
					t.Errorf("quay.io: got %+v", quay)
				}
				if c.Proxy.DefaultUpstream != "ghcr.io" || len(c.Proxy.Access.Tokens) != 2 || c.Proxy.Access.Users["ci"] != "pw" || len(c.Proxy.Access.CIDRs) != 2 {
					t.Errorf("got proxy %+v", c.Proxy)
				}
			},
		},
		{name: "user without password", env: map[string]string{"PULLTHROUGH_UPSTREAM_USERNAME": "only-user"}, wantErr: []string{"PULLTHROUGH_UPSTREAM_USERNAME"}},
		{name: "unknown default upstream", env: map[string]string{"PULLTHROUGH_DEFAULT_UPSTREAM": "ghcr.io"}, wantErr: []string{"PULLTHROUGH_DEFAULT_UPSTREAM"}},
		{name: "bad client users and cidrs", env: map[string]string{"PULLTHROUGH_CLIENT_USERS": "nopassword", "PULLTHROUGH_CLIENT_CIDRS": "10.0.0.0/33"}, wantErr: []string{"PULLTHROUGH_CLIENT_USERS", "PULLTHROUGH_CLIENT_CIDRS"}},
		{name: "repeated upstream", env: map[string]string{"PULLTHROUGH_UPSTREAMS": "ghcr.io,ghcr.io"}, wantErr: []string{"PULLTHROUGH_UPSTREAMS"}},
		{name: "bad bucket", env: map[string]string{"PULLTHROUGH_STORE": "s3://a"}, wantErr: []string{"PULLTHROUGH_STORE"}},
		{name: "upstream with path", env: map[string]string{"PULLTHROUGH_UPSTREAM": "https://r.example/v2"}, wantErr: []string{"PULLTHROUGH_UPSTREAM"}},
		{name: "credentials in an upstream URL are refused and not echoed", env: map[string]string{"PULLTHROUGH_UPSTREAM": "https://robot:hunter2@r.example"}, wantErr: []string{"PULLTHROUGH_UPSTREAM", "holds credentials"}},
		{name: "credentials in an upstreams entry", env: map[string]string{"PULLTHROUGH_UPSTREAMS": "r.example=https://robot:hunter2@r.example"}, wantErr: []string{"PULLTHROUGH_UPSTREAMS", "holds credentials"}},
		{name: "presign too long", env: map[string]string{"PULLTHROUGH_PRESIGN_TTL": "200h"}, wantErr: []string{"PULLTHROUGH_PRESIGN_TTL"}},
		{
			name:    "misspelled names are reported with the other problems",
			env:     map[string]string{"PULLTHROUGH_UPSTRAEMS": "ghcr.io", "PULLTHROUGH_MAX_FILLS": "0", "PULLTHROUGH_STORE": "file://cache"},
			wantErr: []string{"PULLTHROUGH_UPSTRAEMS: unknown variable", "PULLTHROUGH_MAX_FILLS", "PULLTHROUGH_STORE"},
		},
		{
			name: "the repository's tooling variables and other programs' are left alone",
			env:  map[string]string{"PULLTHROUGH_TOOLS": "/opt/tools", "PULLTHROUGH_DOCTOR_TOKEN": "t", "PULLTHROUGHPUT": "x", "AWS_REGION": "eu-west-1"},
			check: func(t *testing.T, c Config) {
				if c.Addr != defaultAddr {
					t.Errorf("got addr %q, want %q", c.Addr, defaultAddr)
				}
			},
		},
		{
			name: "the first upstream's keyed options are known",
			env:  map[string]string{"PULLTHROUGH_UPSTREAM_DOCKER_IO_TOKEN": "tok", "PULLTHROUGH_UPSTREAM_DOCKER_IO_ALLOW": "library/*"},
			check: func(t *testing.T, c Config) {
				if u := c.Upstreams[0]; u.Token != "tok" || len(u.Allow) != 1 {
					t.Errorf("got upstream %+v, want the token and one allow glob", u)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConfig(tc.env)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("got no error, want one naming %v", tc.wantErr)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not name %s", err, w)
					}
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error %q echoes a password", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestApplySecret(t *testing.T) {
	c, err := parseConfig(map[string]string{"PULLTHROUGH_UPSTREAMS": "docker.io,ghcr.io"})
	if err != nil {
		t.Fatal(err)
	}
	doc := `{"upstreams":{"docker.io":{"username":"u","password":"p"},"ghcr.io":{"token":"tok"}},"clients":{"tokens":["ct"],"users":{"ci":"pw"}}}`
	if err := applySecret(&c, []byte(doc)); err != nil {
		t.Fatal(err)
	}
	if c.Upstreams[0].Username != "u" || c.Upstreams[0].Password != "p" || c.Upstreams[1].Token != "tok" {
		t.Errorf("got upstreams %+v", c.Upstreams)
	}
	if len(c.Proxy.Access.Tokens) != 1 || c.Proxy.Access.Users["ci"] != "pw" {
		t.Errorf("got access %+v", c.Proxy.Access)
	}
	// A secret that would leave the mirror open, or half-configure an
	// upstream, is refused like the same values in the environment.
	for _, bad := range []string{
		`{"clients":{"tokens":[""]}}`,
		`{"clients":{"tokens":["ok"," "]}}`,
		`{"clients":{"users":{"ci":""}}}`,
		`{"clients":{"users":{"":"hunter2"}}}`,
		`{"upstreams":{"docker.io":{"username":"u"}}}`,
	} {
		var fresh Config
		fresh.Upstreams = c.Upstreams
		if err := applySecret(&fresh, []byte(bad)); err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("secret %s: got %v, want an error without the secret", bad, err)
		}
	}
	err = applySecret(&c, []byte(`{"upstreams":{"quay.io":{"password":"hunter2"}}}`))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("unknown upstream: got %v, want an error without the secret", err)
	}
	if err := applySecret(&c, []byte(`not json hunter2`)); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("bad JSON: got %v, want an error without the secret", err)
	}
}

// A value that breaks a rule of proxy.Config, proxy.UpstreamConfig or
// store.UploadTuning (their Validate methods own the rules) is reported
// under the variable it came from, with the rule.
func TestParseConfigNamesVariable(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"PULLTHROUGH_PRESIGN_TTL": "200h"}, "PULLTHROUGH_PRESIGN_TTL: want between 1s and 168h, got 200h"},
		{map[string]string{"PULLTHROUGH_FILL_TIMEOUT": "500ms"}, "PULLTHROUGH_FILL_TIMEOUT: want at least 1s, got 500ms"},
		{map[string]string{"PULLTHROUGH_FILL_LEASE_TTL": "1s"}, "PULLTHROUGH_FILL_LEASE_TTL: want at least 3s, got 1s"},
		{map[string]string{"PULLTHROUGH_LARGE_BLOB_POLICY": "later"}, `PULLTHROUGH_LARGE_BLOB_POLICY: want wait, redirect-upstream or auto, got "later"`},
		{map[string]string{"PULLTHROUGH_FILL_PARTS": "17"}, "PULLTHROUGH_FILL_PARTS: want 1 to 16, got 17"},
		{map[string]string{"PULLTHROUGH_FILL_PART_SIZE": "512MiB"}, "PULLTHROUGH_FILL_PART_SIZE: want 1MiB to 256MiB, got 512MiB"},
		{map[string]string{"PULLTHROUGH_MAX_FILLS": "2000"}, "PULLTHROUGH_MAX_FILLS: want 1 to 1024, got 2000"},
		{map[string]string{"PULLTHROUGH_CLIENT_USERS": ":hunter2"}, "PULLTHROUGH_CLIENT_USERS: a user has an empty"},
		{map[string]string{"PULLTHROUGH_CLIENT_CIDRS": "10.0.0.0/33"}, `PULLTHROUGH_CLIENT_CIDRS: "10.0.0.0/33" is not a CIDR or address`},
		{map[string]string{"PULLTHROUGH_S3_PART_SIZE": "4MiB"}, "PULLTHROUGH_S3_PART_SIZE: want 5MiB to 5GiB, got 4MiB"},
		{map[string]string{"PULLTHROUGH_S3_UPLOAD_CONCURRENCY": "65"}, "PULLTHROUGH_S3_UPLOAD_CONCURRENCY: want 1 to 64, got 65"},
		{map[string]string{"PULLTHROUGH_UPSTREAM": "ftp://r.example"}, `PULLTHROUGH_UPSTREAM: want a base URL such as https://registry-1.docker.io, got "ftp://r.example"`},
		{map[string]string{"PULLTHROUGH_UPSTREAM": "https://r.example?x=1"}, "PULLTHROUGH_UPSTREAM: want a base URL without a path or query"},
		{map[string]string{"PULLTHROUGH_UPSTREAMS": "r@x=https://r.example"}, `PULLTHROUGH_UPSTREAMS: want a registry host such as ghcr.io or registry.example:5000, got "r@x"`},
		{map[string]string{"PULLTHROUGH_UPSTREAMS": "ghcr.io,GHCR.IO"}, `PULLTHROUGH_UPSTREAMS: registry host "ghcr.io" is configured twice`},
		{map[string]string{"PULLTHROUGH_UPSTREAMS": "r.example=https://robot:hunter2@r.example"}, `PULLTHROUGH_UPSTREAMS: the URL for "r.example" holds credentials`},
		{map[string]string{"PULLTHROUGH_UPSTREAMS": "ghcr.io", "PULLTHROUGH_UPSTREAM_GHCR_IO_USERNAME": "u"}, "PULLTHROUGH_UPSTREAM_GHCR_IO_USERNAME: want both a user name and a password, or neither"},
		{map[string]string{"PULLTHROUGH_UPSTREAM_AUTH_HOSTS": "auth.example/token"}, `PULLTHROUGH_UPSTREAM_AUTH_HOSTS: want host[:port] names, got "auth.example/token"`},
		{map[string]string{"PULLTHROUGH_SPOOL_DIR": "/nonexistent-spool-dir/x"}, `PULLTHROUGH_SPOOL_DIR: want an existing directory, got "/nonexistent-spool-dir/x"`},
		{map[string]string{"PULLTHROUGH_FILL_WAIT": "0s"}, "PULLTHROUGH_FILL_WAIT: want more than 0s, got 0s"},
		{map[string]string{"PULLTHROUGH_RETENTION": "106752d"}, `PULLTHROUGH_RETENTION: want days such as 30d or a Go duration such as 720h, got "106752d"`},
		{map[string]string{"PULLTHROUGH_RETENTION": "99999999999d"}, `PULLTHROUGH_RETENTION: want days such as 30d or a Go duration such as 720h, got "99999999999d"`},
		{map[string]string{"PULLTHROUGH_CLIENT_TOKENS": ","}, "PULLTHROUGH_CLIENT_TOKENS: token 1 is empty"},
		{map[string]string{"PULLTHROUGH_CLIENT_TOKENS": "t1,"}, "PULLTHROUGH_CLIENT_TOKENS: token 2 is empty"},
		{map[string]string{"PULLTHROUGH_CLIENT_USERS": "ci:pw,"}, "PULLTHROUGH_CLIENT_USERS: want user:password pairs"},
		{map[string]string{"PULLTHROUGH_UPSTREAMS": ",,"}, "PULLTHROUGH_UPSTREAMS: want comma-separated entries, got only commas and blanks"},
		{map[string]string{"PULLTHROUGH_HOSTS": ","}, "PULLTHROUGH_HOSTS: want comma-separated entries, got only commas and blanks"},
		{map[string]string{"PULLTHROUGH_CLIENT_CIDRS": " , "}, "PULLTHROUGH_CLIENT_CIDRS: want comma-separated entries, got only commas and blanks"},
		{map[string]string{"PULLTHROUGH_UPSTREAMS": "ghcr.io", "PULLTHROUGH_UPSTREAM_GHCR_IO_ALLOW": ","}, "PULLTHROUGH_UPSTREAM_GHCR_IO_ALLOW: want comma-separated entries, got only commas and blanks"},
		{map[string]string{"PULLTHROUGH_UPSTREAM_DENY": ","}, "PULLTHROUGH_UPSTREAM_DENY: want comma-separated entries, got only commas and blanks"},
		{map[string]string{"PULLTHROUGH_UPSTREAMS": "r.example=http://r.example:99999"}, `PULLTHROUGH_UPSTREAMS: want a base URL with a port from 1 to 65535, got "http://r.example:99999"`},
		{map[string]string{"PULLTHROUGH_CLIENT_USERS": "ci:hunter2,ci:other"}, `PULLTHROUGH_CLIENT_USERS: user "ci" is given twice`},
		{map[string]string{"PULLTHROUGH_RETENTION": "1d"}, "PULLTHROUGH_RETENTION: want at least 48h, got 24h"},
		{map[string]string{"PULLTHROUGH_DEFAULT_UPSTREAM": "quay.io"}, `PULLTHROUGH_DEFAULT_UPSTREAM: "quay.io" is not one of the configured upstreams`},
		{map[string]string{"PULLTHROUGH_UPSTRAEMS": "ghcr.io"}, "PULLTHROUGH_UPSTRAEMS: unknown variable; did you mean PULLTHROUGH_UPSTREAMS?"},
		{map[string]string{"PULLTHROUGH_MANIFST_TTL": "1h"}, "PULLTHROUGH_MANIFST_TTL: unknown variable; did you mean PULLTHROUGH_MANIFEST_TTL?"},
		{map[string]string{"PULLTHROUGH_TOKENS": "hunter2"}, "PULLTHROUGH_TOKENS: unknown variable; did you mean PULLTHROUGH_CLIENT_TOKENS?"},
		{map[string]string{"PULLTHROUGH_FROBNICATE": "1"}, "PULLTHROUGH_FROBNICATE: unknown variable (README.md, Configuration, lists them)"},
		{map[string]string{"PULLTHROUGH_UPSTREAM_QUAY_IO_PASSWORD": "hunter2"}, "PULLTHROUGH_UPSTREAM_QUAY_IO_PASSWORD: QUAY_IO is not a configured upstream (configured: DOCKER_IO)"},
		{map[string]string{"PULLTHROUGH_UPSTREAMS": "docker.io,ghcr.io", "PULLTHROUGH_UPSTREAM_GHRC_IO_AUTH_HOSTS": "a.example"}, "PULLTHROUGH_UPSTREAM_GHRC_IO_AUTH_HOSTS: GHRC_IO is not a configured upstream (configured: DOCKER_IO, GHCR_IO)"},
		{map[string]string{"PULLTHROUGH_UPSTREAMS": "ghcr.io", "PULLTHROUGH_UPSTREAM": "https://r.example"}, "PULLTHROUGH_UPSTREAM: not read when PULLTHROUGH_UPSTREAMS is set"},
		{map[string]string{"PULLTHROUGH_UPSTREAM_TOKEN": "hunter2", "PULLTHROUGH_UPSTREAM_DOCKER_IO_TOKEN": "other"}, "PULLTHROUGH_UPSTREAM_TOKEN: PULLTHROUGH_UPSTREAM_DOCKER_IO_TOKEN, for the same upstream, is set too"},
		{map[string]string{"PULLTHROUGH_STORE": "file://relative/dir"}, `PULLTHROUGH_STORE: want an absolute directory such as file:///var/cache/pullthrough, got the relative "relative/dir"`},
		{map[string]string{"PULLTHROUGH_STORE": "file://./cache"}, `PULLTHROUGH_STORE: want an absolute directory such as file:///var/cache/pullthrough, got the relative "./cache"`},
	} {
		t.Run(tc.want, func(t *testing.T) {
			_, err := parseConfig(tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %v, want one containing %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q echoes a password", err)
			}
		})
	}
}
