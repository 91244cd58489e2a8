package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pullthrough/pullthrough/internal/proxy"
)

// Config is everything the binary reads from its environment.
type Config struct {
	Addr        string
	Store       string // file://<dir> or s3://<bucket>[/<prefix>]
	S3PathStyle bool
	Upstream    proxy.UpstreamConfig
	Proxy       proxy.Config
	LogLevel    string
	Lambda      bool
}

// parseConfig reads the PULLTHROUGH_* variables and reports every problem
// at once, each naming its variable.
func parseConfig(getenv func(string) string) (Config, error) {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
	}
	get := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	duration := func(name string, def time.Duration) time.Duration {
		v := get(name, "")
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			bad(name, "want a non-negative Go duration such as 90s or 15m, got %q", v)
			return def
		}
		return d
	}

	c := Config{
		Addr:     get("PULLTHROUGH_ADDR", "127.0.0.1:5000"),
		Store:    get("PULLTHROUGH_STORE", defaultStore()),
		LogLevel: strings.ToLower(get("PULLTHROUGH_LOG_LEVEL", "info")),
		Lambda:   getenv("AWS_LAMBDA_RUNTIME_API") != "",
	}
	if _, _, err := splitStore(c.Store); err != nil {
		bad("PULLTHROUGH_STORE", "%v", err)
	}
	switch v := strings.ToLower(get("PULLTHROUGH_S3_PATH_STYLE", "false")); v {
	case "true", "1", "yes":
		c.S3PathStyle = true
	case "false", "0", "no":
	default:
		bad("PULLTHROUGH_S3_PATH_STYLE", "want true or false, got %q", v)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("PULLTHROUGH_LOG_LEVEL", "want debug, info, warn or error, got %q", c.LogLevel)
	}

	c.Upstream = proxy.UpstreamConfig{
		URL:      get("PULLTHROUGH_UPSTREAM", proxy.DockerHubURL),
		Username: getenv("PULLTHROUGH_UPSTREAM_USERNAME"),
		Password: getenv("PULLTHROUGH_UPSTREAM_PASSWORD"),
	}
	if (c.Upstream.Username == "") != (c.Upstream.Password == "") {
		bad("PULLTHROUGH_UPSTREAM_USERNAME", "set both PULLTHROUGH_UPSTREAM_USERNAME and PULLTHROUGH_UPSTREAM_PASSWORD, or neither")
	}
	if u, err := url.Parse(c.Upstream.URL); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || (u.Path != "" && u.Path != "/") {
		bad("PULLTHROUGH_UPSTREAM", "want a base URL such as https://registry-1.docker.io, got %q", c.Upstream.URL)
	} else if u.Host == "registry-1.docker.io" {
		c.Upstream.Host = proxy.DockerHubHost
	}
	if v := get("PULLTHROUGH_UPSTREAM_AUTH_HOSTS", ""); v != "" {
		for _, h := range strings.Split(v, ",") {
			if h = strings.TrimSpace(h); h != "" {
				if strings.ContainsAny(h, "/@ ") {
					bad("PULLTHROUGH_UPSTREAM_AUTH_HOSTS", "want host[:port] names, got %q", h)
				}
				c.Upstream.AuthHosts = append(c.Upstream.AuthHosts, h)
			}
		}
	}

	c.Proxy = proxy.Config{
		ManifestTTL: duration("PULLTHROUGH_MANIFEST_TTL", proxy.DefaultManifestTTL),
		PresignTTL:  duration("PULLTHROUGH_PRESIGN_TTL", proxy.DefaultPresignTTL),
		FillTimeout: duration("PULLTHROUGH_FILL_TIMEOUT", proxy.DefaultFillTimeout),
	}
	if c.Proxy.PresignTTL < time.Second || c.Proxy.PresignTTL > 7*24*time.Hour {
		bad("PULLTHROUGH_PRESIGN_TTL", "want between 1s and 168h, got %s", c.Proxy.PresignTTL)
	}
	if c.Proxy.FillTimeout < time.Second {
		bad("PULLTHROUGH_FILL_TIMEOUT", "want at least 1s, got %s", c.Proxy.FillTimeout)
	}
	return c, errors.Join(errs...)
}

// splitStore parses PULLTHROUGH_STORE into a scheme and the rest.
func splitStore(v string) (scheme, rest string, err error) {
	scheme, rest, ok := strings.Cut(v, "://")
	if !ok || rest == "" {
		return "", "", fmt.Errorf("want file://<dir> or s3://<bucket>[/<prefix>], got %q", v)
	}
	switch scheme {
	case "file":
		return scheme, rest, nil
	case "s3":
		bucket, _, _ := strings.Cut(rest, "/")
		if len(bucket) < 3 || len(bucket) > 63 || strings.ContainsAny(bucket, " _:?#") {
			return "", "", fmt.Errorf("invalid bucket name %q", bucket)
		}
		return scheme, strings.TrimRight(rest, "/"), nil
	}
	return "", "", fmt.Errorf("unknown scheme %q: want file:// or s3://", scheme)
}

// defaultStore is a directory in the user's cache, or the working directory
// if there is none.
func defaultStore() string {
	if dir, err := os.UserCacheDir(); err == nil {
		return "file://" + filepath.Join(dir, "pullthrough")
	}
	return "file://" + filepath.Join(".", "pullthrough-cache")
}
