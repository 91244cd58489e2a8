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
				if c.Addr != "127.0.0.1:5000" || c.Upstream.URL != "https://registry-1.docker.io" || c.Upstream.Host != "docker.io" {
					t.Errorf("got addr %q upstream %q host %q", c.Addr, c.Upstream.URL, c.Upstream.Host)
				}
				if !strings.HasPrefix(c.Store, "file://") || c.Proxy.ManifestTTL != 5*time.Minute || c.Proxy.PresignTTL != 15*time.Minute || c.Lambda {
					t.Errorf("got store %q ttl %s presign %s lambda %v", c.Store, c.Proxy.ManifestTTL, c.Proxy.PresignTTL, c.Lambda)
				}
			},
		},
		{
			name: "everything set",
			env: map[string]string{
				"PULLTHROUGH_ADDR": "0.0.0.0:8080", "PULLTHROUGH_STORE": "s3://my-bucket/cache/", "PULLTHROUGH_S3_PATH_STYLE": "true",
				"PULLTHROUGH_UPSTREAM": "https://registry.example:5000", "PULLTHROUGH_UPSTREAM_USERNAME": "u", "PULLTHROUGH_UPSTREAM_PASSWORD": "p",
				"PULLTHROUGH_MANIFEST_TTL": "0s", "PULLTHROUGH_PRESIGN_TTL": "5m", "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
				"PULLTHROUGH_UPSTREAM_AUTH_HOSTS": "auth.example, token.example",
			},
			check: func(t *testing.T, c Config) {
				if c.Store != "s3://my-bucket/cache/" || !c.S3PathStyle || c.Proxy.ManifestTTL != 0 || c.Proxy.PresignTTL != 5*time.Minute || !c.Lambda {
					t.Errorf("got %+v", c)
				}
				if c.Upstream.Username != "u" || len(c.Upstream.AuthHosts) != 2 || c.Upstream.AuthHosts[1] != "token.example" {
					t.Errorf("got upstream %+v", c.Upstream)
				}
			},
		},
		{
			name: "every problem at once",
			env: map[string]string{
				"PULLTHROUGH_STORE": "ftp://x", "PULLTHROUGH_MANIFEST_TTL": "soon", "PULLTHROUGH_PRESIGN_TTL": "-1s",
				"PULLTHROUGH_UPSTREAM": "registry.example", "PULLTHROUGH_UPSTREAM_USERNAME": "only-user", "PULLTHROUGH_S3_PATH_STYLE": "maybe",
			},
			wantErr: []string{"PULLTHROUGH_STORE", "PULLTHROUGH_MANIFEST_TTL", "PULLTHROUGH_PRESIGN_TTL", "PULLTHROUGH_UPSTREAM:", "PULLTHROUGH_UPSTREAM_USERNAME", "PULLTHROUGH_S3_PATH_STYLE"},
		},
		{name: "bad bucket", env: map[string]string{"PULLTHROUGH_STORE": "s3://a"}, wantErr: []string{"PULLTHROUGH_STORE"}},
		{name: "upstream with path", env: map[string]string{"PULLTHROUGH_UPSTREAM": "https://r.example/v2"}, wantErr: []string{"PULLTHROUGH_UPSTREAM"}},
		{name: "presign too long", env: map[string]string{"PULLTHROUGH_PRESIGN_TTL": "200h"}, wantErr: []string{"PULLTHROUGH_PRESIGN_TTL"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConfig(func(k string) string { return tc.env[k] })
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("got no error, want one naming %v", tc.wantErr)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not name %s", err, w)
					}
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
