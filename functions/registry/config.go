package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pullthrough/pullthrough/internal/dockerhub"
	"github.com/pullthrough/pullthrough/internal/proxy"
)

// Config is everything the binary reads from its environment.
type Config struct {
	Addr        string
	MaxConns    int    // local server: open connections at most
	Store       string // file://<dir> or s3://<bucket>[/<prefix>]
	S3PathStyle bool
	// S3PartSize and S3Concurrency tune fills: memory per fill is about
	// (concurrency+1) parts.
	S3PartSize, S3Concurrency int
	Upstreams                 []proxy.UpstreamConfig
	Proxy                     proxy.Config
	LogLevel                  string
	Lambda                    bool
	// CredentialsSecret names an AWS Secrets Manager secret with upstream
	// and client credentials, read once at start (see applySecret).
	CredentialsSecret string
	// FunctionName is the Lambda function's own name, for invoking itself
	// to run fills that may outlast a request.
	FunctionName string
	// Retention enables the sweep (sweep.go): content not used within it
	// is deleted. Zero, the default, disables it.
	Retention time.Duration
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

	// intIn reads an integer variable in [lo, hi], def when unset.
	intIn := func(name string, def, lo, hi int) int {
		v := get(name, "")
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			bad(name, "want %d to %d, got %q", lo, hi, v)
		}
		return n
	}

	c := Config{
		Addr:     get("PULLTHROUGH_ADDR", "127.0.0.1:5000"),
		Store:    get("PULLTHROUGH_STORE", defaultStore()),
		LogLevel: strings.ToLower(get("PULLTHROUGH_LOG_LEVEL", "info")),
		Lambda:   getenv("AWS_LAMBDA_RUNTIME_API") != "",
		MaxConns: intIn("PULLTHROUGH_MAX_CONNECTIONS", 256, 1, 65535),
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

	c.Upstreams = parseUpstreams(get, bad)
	c.CredentialsSecret = get("PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET", "")

	c.Proxy = proxy.Config{
		ManifestTTL: duration("PULLTHROUGH_MANIFEST_TTL", proxy.DefaultManifestTTL),
		PresignTTL:  duration("PULLTHROUGH_PRESIGN_TTL", proxy.DefaultPresignTTL),
		FillTimeout: duration("PULLTHROUGH_FILL_TIMEOUT", proxy.DefaultFillTimeout),
		LeaseTTL:    duration("PULLTHROUGH_FILL_LEASE_TTL", proxy.DefaultLeaseTTL),
		FillWait:    duration("PULLTHROUGH_FILL_WAIT", proxy.DefaultFillWait),
		DeniedGrace: duration("PULLTHROUGH_DENIED_GRACE", 0),
	}
	if c.Proxy.ManifestTTL == 0 { // PULLTHROUGH_MANIFEST_TTL=0s: revalidate every request
		c.Proxy.ManifestTTL = proxy.RevalidateAlways
	}
	c.Proxy.LargeBlobPolicy = get("PULLTHROUGH_LARGE_BLOB_POLICY", proxy.PolicyAuto)
	switch c.Proxy.LargeBlobPolicy {
	case proxy.PolicyWait, proxy.PolicyUpstream, proxy.PolicyAuto:
	default:
		bad("PULLTHROUGH_LARGE_BLOB_POLICY", "want wait, redirect-upstream or auto, got %q", c.Proxy.LargeBlobPolicy)
	}
	if v := get("PULLTHROUGH_LARGE_BLOB_SIZE", ""); v != "" {
		n, err := parseSize(v)
		if err != nil {
			bad("PULLTHROUGH_LARGE_BLOB_SIZE", "want a size such as 512MiB or 2GiB, got %q", v)
		}
		c.Proxy.LargeBlobSize = n
	}
	c.Proxy.MaxBlobSize = proxy.DefaultMaxBlobSize
	if v := get("PULLTHROUGH_MAX_BLOB_SIZE", ""); v == "0" {
		c.Proxy.MaxBlobSize = 0 // no cap
	} else if v != "" {
		n, err := parseSize(v)
		if err != nil {
			bad("PULLTHROUGH_MAX_BLOB_SIZE", "want a size such as 10GiB, or 0 for no cap, got %q", v)
		}
		c.Proxy.MaxBlobSize = n
	}
	c.FunctionName = getenv("AWS_LAMBDA_FUNCTION_NAME")
	if v := get("PULLTHROUGH_RETENTION", ""); v != "" {
		d, err := parseRetention(v)
		if err != nil || d < proxy.MinRetention {
			bad("PULLTHROUGH_RETENTION", "want a duration of at least 2d such as 30d or 720h, got %q", v)
		}
		c.Retention = d
	}
	c.S3PartSize = 8 << 20
	if v := get("PULLTHROUGH_S3_PART_SIZE", ""); v != "" {
		n, err := parseSize(v)
		if err != nil || n < 5<<20 || n > 5<<30 {
			bad("PULLTHROUGH_S3_PART_SIZE", "want 5MiB to 5GiB, got %q", v)
		}
		c.S3PartSize = int(n)
	}
	c.S3Concurrency = intIn("PULLTHROUGH_S3_UPLOAD_CONCURRENCY", 4, 1, 64)
	c.Proxy.MaxFills = intIn("PULLTHROUGH_MAX_FILLS", proxy.DefaultMaxFills, 1, 1024)
	c.Proxy.FillParts = intIn("PULLTHROUGH_FILL_PARTS", proxy.DefaultFillParts, 1, 16)
	c.Proxy.FillPartSize = proxy.DefaultFillPartSize
	if v := get("PULLTHROUGH_FILL_PART_SIZE", ""); v != "" {
		n, err := parseSize(v)
		if err != nil || n < 1<<20 || n > 256<<20 {
			bad("PULLTHROUGH_FILL_PART_SIZE", "want 1MiB to 256MiB, got %q", v)
		}
		c.Proxy.FillPartSize = n
	}
	c.Proxy.SpoolDir = get("PULLTHROUGH_SPOOL_DIR", "")
	if c.Proxy.LeaseTTL < proxy.MinLeaseTTL {
		bad("PULLTHROUGH_FILL_LEASE_TTL", "want at least %s, got %s", proxy.MinLeaseTTL, c.Proxy.LeaseTTL)
	}
	c.Proxy.DefaultUpstream = get("PULLTHROUGH_DEFAULT_UPSTREAM", "")
	if d := c.Proxy.DefaultUpstream; d != "" && !hasUpstream(c.Upstreams, d) {
		bad("PULLTHROUGH_DEFAULT_UPSTREAM", "%q is not one of the configured upstreams", d)
	}
	c.Proxy.Access = proxy.AccessConfig{
		Tokens: list(get("PULLTHROUGH_CLIENT_TOKENS", "")),
		CIDRs:  list(get("PULLTHROUGH_CLIENT_CIDRS", "")),
		// A function URL is reached only under its own name, which AWS
		// routes by; the local server must refuse rebound DNS names.
		Hosts: hostsFor(c.Lambda, list(get("PULLTHROUGH_HOSTS", "localhost"))),
		Users: map[string]string{},
	}
	for _, up := range list(get("PULLTHROUGH_CLIENT_USERS", "")) {
		user, pass, ok := strings.Cut(up, ":")
		if !ok || user == "" || pass == "" {
			bad("PULLTHROUGH_CLIENT_USERS", "want user:password pairs separated by commas")
			continue
		}
		c.Proxy.Access.Users[user] = pass
	}
	for _, cidr := range c.Proxy.Access.CIDRs {
		if _, err := netip.ParsePrefix(cidr); err != nil {
			if _, err := netip.ParseAddr(cidr); err != nil {
				bad("PULLTHROUGH_CLIENT_CIDRS", "%q is not a CIDR or address", cidr)
			}
		}
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
		return "file://" + filepath.Join(dir, "pullthrough", "store")
	}
	return "file://" + filepath.Join(".", "pullthrough-cache")
}

// parseUpstreams reads PULLTHROUGH_UPSTREAMS ("host[=url],..."), or the
// single PULLTHROUGH_UPSTREAM URL, and each upstream's options from
// PULLTHROUGH_UPSTREAM_<HOST>_<OPTION>, where <HOST> is the host in upper
// case with every other character turned into "_" (ghcr.io -> GHCR_IO).
// The un-keyed PULLTHROUGH_UPSTREAM_<OPTION> apply to the first upstream.
func parseUpstreams(get func(string, string) string, bad func(string, string, ...any)) []proxy.UpstreamConfig {
	type entry struct{ host, url string }
	var entries []entry
	if v := get("PULLTHROUGH_UPSTREAMS", ""); v != "" {
		for _, item := range list(v) {
			host, raw, _ := strings.Cut(item, "=")
			host = strings.ToLower(strings.TrimSpace(host))
			if raw == "" {
				raw = "https://" + host
				if host == dockerhub.Host {
					raw = dockerhub.URL
				}
			}
			entries = append(entries, entry{host, strings.TrimSpace(raw)})
		}
	} else {
		raw := get("PULLTHROUGH_UPSTREAM", dockerhub.URL)
		host := ""
		if u, err := url.Parse(raw); err == nil {
			host = strings.ToLower(u.Host)
		}
		host = dockerhub.Canonical(host)
		entries = append(entries, entry{host, raw})
	}
	var out []proxy.UpstreamConfig
	seen := map[string]bool{}
	for i, e := range entries {
		name := "PULLTHROUGH_UPSTREAMS"
		if get("PULLTHROUGH_UPSTREAMS", "") == "" {
			name = "PULLTHROUGH_UPSTREAM"
		}
		if u, err := url.Parse(e.url); err == nil && u.User != nil {
			// Never echo it: the message reaches logs and terminals.
			bad(name, "the URL for %q holds credentials (user:password@): set them with PULLTHROUGH_UPSTREAM_<HOST>_USERNAME/_PASSWORD or the credentials secret", e.host)
			continue
		} else if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || (u.Path != "" && u.Path != "/") {
			bad(name, "want a base URL such as https://registry-1.docker.io, got %q", redactURL(e.url))
			continue
		}
		if e.host == "" || strings.ContainsAny(e.host, "/@ ") || seen[e.host] {
			bad(name, "bad or repeated registry host %q", e.host)
			continue
		}
		seen[e.host] = true
		opt := func(option string) (string, string) {
			keyed := "PULLTHROUGH_UPSTREAM_" + envKey(e.host) + "_" + option
			if v := get(keyed, ""); v != "" || i > 0 {
				return keyed, v
			}
			plain := "PULLTHROUGH_UPSTREAM_" + option
			return plain, get(plain, "")
		}
		uc := proxy.UpstreamConfig{Host: e.host, URL: strings.TrimRight(e.url, "/")}
		var userVar string
		userVar, uc.Username = opt("USERNAME")
		_, uc.Password = opt("PASSWORD")
		_, uc.Token = opt("TOKEN")
		if (uc.Username == "") != (uc.Password == "") {
			bad(userVar, "set both USERNAME and PASSWORD for %s, or neither", e.host)
		}
		authVar, auth := opt("AUTH_HOSTS")
		for _, h := range list(auth) {
			if strings.ContainsAny(h, "/@ ") {
				bad(authVar, "want host[:port] names, got %q", h)
			}
			uc.AuthHosts = append(uc.AuthHosts, h)
		}
		_, allow := opt("ALLOW")
		_, deny := opt("DENY")
		uc.Allow, uc.Deny = list(allow), list(deny)
		out = append(out, uc)
	}
	return out
}

func hasUpstream(ups []proxy.UpstreamConfig, host string) bool {
	for _, u := range ups {
		if strings.EqualFold(u.Host, host) {
			return true
		}
	}
	return false
}

// envKey turns a host into the part of a variable name that stands for it.
func envKey(host string) string {
	b := []byte(strings.ToUpper(host))
	for i, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
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

// secretDoc is the JSON held in PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET.
type secretDoc struct {
	Upstreams map[string]struct {
		Username string `json:"username"`
		Password string `json:"password"`
		Token    string `json:"token"`
	} `json:"upstreams"`
	Clients struct {
		Tokens []string          `json:"tokens"`
		Users  map[string]string `json:"users"`
	} `json:"clients"`
}

// applySecret merges credentials from the secret's JSON over the
// environment's. It never echoes secret values in its errors.
func applySecret(c *Config, data []byte) error {
	var doc secretDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return errors.New("PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET: the secret is not the documented JSON document")
	}
	for host, cred := range doc.Upstreams {
		found := false
		for i := range c.Upstreams {
			if strings.EqualFold(c.Upstreams[i].Host, host) {
				found = true
				if cred.Username != "" {
					c.Upstreams[i].Username, c.Upstreams[i].Password = cred.Username, cred.Password
				}
				if cred.Token != "" {
					c.Upstreams[i].Token = cred.Token
				}
			}
		}
		if !found {
			return fmt.Errorf("PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET: credentials for %q, which is not a configured upstream", host)
		}
	}
	// The same rules as for the environment's credentials: an empty token
	// or password would leave the mirror open (or shared by anyone who
	// guesses the user name) while the operator believes it protected.
	for i, tok := range doc.Clients.Tokens {
		if strings.TrimSpace(tok) == "" {
			return fmt.Errorf("PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET: clients.tokens[%d] is empty", i)
		}
	}
	for u, p := range doc.Clients.Users {
		if u == "" || p == "" || strings.Contains(u, ":") {
			return fmt.Errorf("PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET: clients.users has an entry with an empty or invalid user name or an empty password")
		}
	}
	for host, cred := range doc.Upstreams {
		if (cred.Username == "") != (cred.Password == "") {
			return fmt.Errorf("PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET: upstreams[%q] needs both username and password", host)
		}
	}
	c.Proxy.Access.Tokens = append(c.Proxy.Access.Tokens, doc.Clients.Tokens...)
	for u, p := range doc.Clients.Users {
		if c.Proxy.Access.Users == nil {
			c.Proxy.Access.Users = map[string]string{}
		}
		c.Proxy.Access.Users[u] = p
	}
	return nil
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

// hostsFor is the Host names the mirror answers to: any under Lambda,
// else the configured list (IP literals are always answered).
func hostsFor(lambda bool, hosts []string) []string {
	if lambda {
		return nil
	}
	return hosts
}

// redactURL drops the query and credentials of one URL for an error
// message; text that is not a URL is returned as is.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return raw
	}
	u.User, u.RawQuery = nil, ""
	return u.String()
}
