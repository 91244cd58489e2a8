package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pullthrough/pullthrough/internal/dockerhub"
	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/store"
)

// Config is everything the binary reads from its environment.
type Config struct {
	Addr        string
	MaxConns    int    // local server: open connections at most
	Store       string // file://<dir> or s3://<bucket>[/<prefix>]
	S3PathStyle bool
	// S3Upload tunes fills into S3: memory per fill is about
	// (Concurrency+1) × PartSize.
	S3Upload  store.UploadTuning
	Upstreams []proxy.UpstreamConfig
	Proxy     proxy.Config
	LogLevel  string
	Lambda    bool
	// RuntimeAPI is the Lambda Runtime API's address (Lambda is RuntimeAPI != "").
	RuntimeAPI string
	// CredentialsSecret names an AWS Secrets Manager secret with upstream
	// and client credentials, read once at start (see applySecret).
	CredentialsSecret string
	// FunctionName is the Lambda function's own name, for invoking itself
	// to run fills that may outlast a request.
	FunctionName string
	// Retention enables the sweep (sweep.go): content not used within it
	// is deleted. Zero, the default, disables it.
	Retention time.Duration
	// AllowOpen is the operator's choice of a mirror without client
	// credentials or CIDRs where others can reach it (refuseOpen).
	AllowOpen bool
}

// Defaults of the binary's own settings (the cache policy's are proxy's
// Default* constants, the S3 upload's store's).
const (
	defaultAddr     = "127.0.0.1:5000"
	defaultMaxConns = 256
	maxMaxConns     = 65535
	defaultLogLevel = "info"
	defaultHosts    = "localhost"
)

// parseConfig reads the PULLTHROUGH_* variables and reports every problem
// at once, each naming its variable. It parses strings into values; the
// rules on those values are the Validate methods of proxy.Config,
// proxy.UpstreamConfig and store.UploadTuning, whose field errors are
// renamed to the variables (proxyVars, s3Vars, upstreamOptions). A
// PULLTHROUGH_* name in vars that nothing reads is refused too
// (unknownVars). vars is the environment: environ(os.Environ()).
func parseConfig(vars map[string]string) (Config, error) {
	e := &env{vars: vars}
	c := parseServer(e)
	c.Upstreams = parseUpstreams(e)
	c.Proxy = parseProxy(e)
	c.Proxy.Access = parseAccess(e, c.Lambda)
	c.S3Upload = store.UploadTuning{
		PartSize:    int(e.size("PULLTHROUGH_S3_PART_SIZE", store.DefaultPartSize)),
		Concurrency: e.integer("PULLTHROUGH_S3_UPLOAD_CONCURRENCY", store.DefaultUploadConcurrency),
	}
	e.fieldErrors(c.Proxy.Validate(), proxyVars())
	e.fieldErrors(c.S3Upload.Validate(), s3Vars())
	hosts := make([]string, len(c.Upstreams))
	hostVars := map[string]string{"DefaultUpstream": "PULLTHROUGH_DEFAULT_UPSTREAM"}
	for i, u := range c.Upstreams {
		hosts[i] = u.Host
		hostVars[fmt.Sprintf("Upstreams[%d].Host", i)] = "PULLTHROUGH_UPSTREAMS"
	}
	e.fieldErrors(proxy.ValidateUpstreamHosts(c.Proxy.DefaultUpstream, hosts), hostVars)
	keys := make([]string, len(hosts))
	for i, h := range hosts {
		keys[i] = envKey(h)
	}
	unknownVars(e, keys)
	return c, e.err()
}

// parseServer reads the process's own settings: where it listens and
// stores, how it logs, whether it runs in Lambda, and the sweep.
func parseServer(e *env) Config {
	c := Config{
		Addr:              e.get("PULLTHROUGH_ADDR", defaultAddr),
		Store:             e.get("PULLTHROUGH_STORE", ""),
		S3PathStyle:       e.boolean("PULLTHROUGH_S3_PATH_STYLE", false),
		LogLevel:          strings.ToLower(e.get("PULLTHROUGH_LOG_LEVEL", defaultLogLevel)),
		RuntimeAPI:        e.getenv("AWS_LAMBDA_RUNTIME_API"),
		FunctionName:      e.getenv("AWS_LAMBDA_FUNCTION_NAME"),
		MaxConns:          e.integer("PULLTHROUGH_MAX_CONNECTIONS", defaultMaxConns),
		CredentialsSecret: e.get("PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET", ""),
		AllowOpen:         e.boolean("PULLTHROUGH_ALLOW_OPEN", false),
	}
	c.Lambda = c.RuntimeAPI != ""
	if c.MaxConns < 1 || c.MaxConns > maxMaxConns {
		e.bad("PULLTHROUGH_MAX_CONNECTIONS", "want 1 to %d, got %d", maxMaxConns, c.MaxConns)
	}
	if c.Store == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			e.bad("PULLTHROUGH_STORE", "unset, and there is no user cache directory to default to (%v): set file:///<dir> or s3://<bucket>", err)
		}
		c.Store = "file://" + filepath.Join(dir, "pullthrough", "store")
	} else if _, _, err := splitStore(c.Store); err != nil {
		e.bad("PULLTHROUGH_STORE", "%v", err)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		e.bad("PULLTHROUGH_LOG_LEVEL", "want debug, info, warn or error, got %q", c.LogLevel)
	}
	if v := e.get("PULLTHROUGH_RETENTION", ""); v != "" {
		d, err := parseRetention(v)
		if err != nil {
			e.bad("PULLTHROUGH_RETENTION", "want days such as 30d or a Go duration such as 720h, got %q", v)
		} else {
			e.fieldErrors(proxy.SweepOptions{Retention: d}.Validate(), map[string]string{"Retention": "PULLTHROUGH_RETENTION"})
		}
		c.Retention = d
	}
	return c
}

// parseProxy reads the cache policy: revalidation, presigning, fills and
// blob sizes. Unset variables get proxy's Default* constants.
func parseProxy(e *env) proxy.Config {
	c := proxy.Config{
		ManifestTTL:     e.duration("PULLTHROUGH_MANIFEST_TTL", proxy.DefaultManifestTTL),
		PresignTTL:      e.duration("PULLTHROUGH_PRESIGN_TTL", proxy.DefaultPresignTTL),
		FillTimeout:     e.duration("PULLTHROUGH_FILL_TIMEOUT", proxy.DefaultFillTimeout),
		LeaseTTL:        e.duration("PULLTHROUGH_FILL_LEASE_TTL", proxy.DefaultLeaseTTL),
		FillWait:        e.duration("PULLTHROUGH_FILL_WAIT", proxy.DefaultFillWait),
		DeniedGrace:     e.duration("PULLTHROUGH_DENIED_GRACE", 0),
		LargeBlobPolicy: e.get("PULLTHROUGH_LARGE_BLOB_POLICY", proxy.PolicyAuto),
		LargeBlobSize:   e.size("PULLTHROUGH_LARGE_BLOB_SIZE", proxy.DefaultLargeBlobSize),
		MaxBlobSize:     proxy.DefaultMaxBlobSize,
		MaxFills:        e.integer("PULLTHROUGH_MAX_FILLS", proxy.DefaultMaxFills),
		FillParts:       e.integer("PULLTHROUGH_FILL_PARTS", proxy.DefaultFillParts),
		FillPartSize:    e.size("PULLTHROUGH_FILL_PART_SIZE", proxy.DefaultFillPartSize),
		SpoolDir:        e.get("PULLTHROUGH_SPOOL_DIR", ""),
		DefaultUpstream: e.get("PULLTHROUGH_DEFAULT_UPSTREAM", ""),
	}
	if c.ManifestTTL == 0 { // PULLTHROUGH_MANIFEST_TTL=0s: revalidate every request
		c.ManifestTTL = proxy.RevalidateAlways
	}
	if e.get("PULLTHROUGH_MAX_BLOB_SIZE", "") == "0" {
		c.MaxBlobSize = 0 // no cap
	} else {
		c.MaxBlobSize = e.size("PULLTHROUGH_MAX_BLOB_SIZE", proxy.DefaultMaxBlobSize)
	}
	return c
}

// parseAccess reads who may use the mirror.
func parseAccess(e *env, lambda bool) proxy.AccessConfig {
	a := proxy.AccessConfig{
		Tokens: clientCredentials(e.get("PULLTHROUGH_CLIENT_TOKENS", "")),
		CIDRs:  e.items("PULLTHROUGH_CLIENT_CIDRS", e.get("PULLTHROUGH_CLIENT_CIDRS", "")),
		// A function URL is reached only under its own name, which AWS
		// routes by; the local server must refuse rebound DNS names.
		Hosts: hostsFor(lambda, e.items("PULLTHROUGH_HOSTS", e.get("PULLTHROUGH_HOSTS", defaultHosts))),
		Users: map[string]string{},
	}
	for _, up := range clientCredentials(e.get("PULLTHROUGH_CLIENT_USERS", "")) {
		user, pass, ok := strings.Cut(up, ":")
		if !ok {
			e.bad("PULLTHROUGH_CLIENT_USERS", "want user:password pairs separated by commas")
			continue
		}
		if _, twice := a.Users[user]; twice {
			// One of the two passwords would silently stop working.
			e.bad("PULLTHROUGH_CLIENT_USERS", "user %q is given twice", user)
		}
		a.Users[user] = pass
	}
	return a
}

// proxyVars names the variable each proxy.Config field is read from, for
// the field errors of proxy.Config.Validate.
func proxyVars() map[string]string {
	return map[string]string{
		"ManifestTTL":     "PULLTHROUGH_MANIFEST_TTL",
		"PresignTTL":      "PULLTHROUGH_PRESIGN_TTL",
		"FillTimeout":     "PULLTHROUGH_FILL_TIMEOUT",
		"LeaseTTL":        "PULLTHROUGH_FILL_LEASE_TTL",
		"FillWait":        "PULLTHROUGH_FILL_WAIT",
		"DeniedGrace":     "PULLTHROUGH_DENIED_GRACE",
		"LargeBlobPolicy": "PULLTHROUGH_LARGE_BLOB_POLICY",
		"LargeBlobSize":   "PULLTHROUGH_LARGE_BLOB_SIZE",
		"MaxBlobSize":     "PULLTHROUGH_MAX_BLOB_SIZE",
		"MaxFills":        "PULLTHROUGH_MAX_FILLS",
		"FillParts":       "PULLTHROUGH_FILL_PARTS",
		"FillPartSize":    "PULLTHROUGH_FILL_PART_SIZE",
		"SpoolDir":        "PULLTHROUGH_SPOOL_DIR",
		"DefaultUpstream": "PULLTHROUGH_DEFAULT_UPSTREAM",
		"Access.Tokens":   "PULLTHROUGH_CLIENT_TOKENS",
		"Access.Users":    "PULLTHROUGH_CLIENT_USERS",
		"Access.CIDRs":    "PULLTHROUGH_CLIENT_CIDRS",
		"Access.Hosts":    "PULLTHROUGH_HOSTS",
	}
}

// s3Vars names the variable of each store.UploadTuning field.
func s3Vars() map[string]string {
	return map[string]string{
		"PartSize":    "PULLTHROUGH_S3_PART_SIZE",
		"Concurrency": "PULLTHROUGH_S3_UPLOAD_CONCURRENCY",
	}
}

// splitStore parses PULLTHROUGH_STORE into a scheme and the rest.
func splitStore(v string) (scheme, rest string, err error) {
	scheme, rest, ok := strings.Cut(v, "://")
	if !ok || rest == "" {
		return "", "", fmt.Errorf("want file://<dir> or s3://<bucket>[/<prefix>], got %q", v)
	}
	switch scheme {
	case "file":
		// A relative path would resolve against whatever directory the
		// process happens to start in: a different cache each time.
		if !filepath.IsAbs(rest) {
			return "", "", fmt.Errorf("want an absolute directory such as file:///var/cache/pullthrough, got the relative %q", rest)
		}
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

// upstreamEntry is one registry named by PULLTHROUGH_UPSTREAMS (or the
// single PULLTHROUGH_UPSTREAM), before its options are read.
type upstreamEntry struct{ host, url string }

// upstreamEntries reads PULLTHROUGH_UPSTREAMS ("host[=url],..."), or the
// single PULLTHROUGH_UPSTREAM URL, and the variable they came from.
func upstreamEntries(e *env) ([]upstreamEntry, string) {
	v := e.get("PULLTHROUGH_UPSTREAMS", "")
	if v != "" && e.get("PULLTHROUGH_UPSTREAM", "") != "" {
		e.bad("PULLTHROUGH_UPSTREAM", "not read when PULLTHROUGH_UPSTREAMS is set: give the URL there (host=url), or unset one of them")
	}
	if v == "" {
		raw := e.get("PULLTHROUGH_UPSTREAM", dockerhub.URL)
		host := ""
		if u, err := url.Parse(raw); err == nil {
			host = strings.ToLower(u.Host)
		}
		return []upstreamEntry{{dockerhub.Canonical(host), raw}}, "PULLTHROUGH_UPSTREAM"
	}
	var entries []upstreamEntry
	for _, item := range e.items("PULLTHROUGH_UPSTREAMS", v) {
		host, raw, _ := strings.Cut(item, "=")
		host = strings.ToLower(strings.TrimSpace(host))
		if host == "" {
			e.bad("PULLTHROUGH_UPSTREAMS", "want host[=base-url] entries, got one without a host")
			continue
		}
		if raw == "" {
			raw = "https://" + host
			if host == dockerhub.Host {
				raw = dockerhub.URL
			}
		}
		entries = append(entries, upstreamEntry{host, strings.TrimSpace(raw)})
	}
	return entries, "PULLTHROUGH_UPSTREAMS"
}

// parseUpstreams reads the upstreams (upstreamEntries) and each one's
// options from PULLTHROUGH_UPSTREAM_<HOST>_<OPTION>, where <HOST> is the
// host in upper case with every other character turned into "_" (ghcr.io
// -> GHCR_IO). The un-keyed PULLTHROUGH_UPSTREAM_<OPTION> apply to the
// first upstream. An upstream that breaks a rule of
// proxy.UpstreamConfig.Validate is reported and left out.
func parseUpstreams(e *env) []proxy.UpstreamConfig {
	entries, listVar := upstreamEntries(e)
	collidingKeys(e, listVar, entries)
	var out []proxy.UpstreamConfig
	for i, ent := range entries {
		uc, vars := upstreamOptions(e, ent, i == 0)
		vars["URL"], vars["Host"] = listVar, listVar
		if err := uc.Validate(); err != nil {
			if errors.Is(err, proxy.ErrURLCredentials) {
				// Never echo it: the message reaches logs and terminals.
				e.bad(listVar, "the URL for %q holds credentials (user:password@): set them with PULLTHROUGH_UPSTREAM_<HOST>_USERNAME/_PASSWORD or the credentials secret", ent.host)
				continue
			}
			e.fieldErrors(err, vars)
			continue
		}
		uc.URL = strings.TrimRight(uc.URL, "/")
		out = append(out, uc)
	}
	return out
}

// upstreamOptions reads one upstream's options, and names the variable
// each UpstreamConfig field came from.
func upstreamOptions(e *env, ent upstreamEntry, first bool) (proxy.UpstreamConfig, map[string]string) {
	vars := map[string]string{}
	opt := func(fieldName, option string) string {
		keyed := "PULLTHROUGH_UPSTREAM_" + envKey(ent.host) + "_" + option
		vars[fieldName] = keyed
		v := e.get(keyed, "")
		if !first {
			return v
		}
		plain := "PULLTHROUGH_UPSTREAM_" + option
		if p := e.get(plain, ""); v == "" {
			vars[fieldName] = plain
			return p
		} else if p != "" {
			// One of the two would be ignored.
			e.bad(plain, "%s, for the same upstream, is set too: set one of them", keyed)
		}
		return v
	}
	uc := proxy.UpstreamConfig{Host: ent.host, URL: ent.url}
	uc.Username = opt("Username", "USERNAME")
	uc.Password = opt("Password", "PASSWORD")
	uc.Token = opt("Token", "TOKEN")
	for _, o := range []struct {
		field, option string
		dst           *[]string
	}{{"AuthHosts", "AUTH_HOSTS", &uc.AuthHosts}, {"Allow", "ALLOW", &uc.Allow}, {"Deny", "DENY", &uc.Deny}} {
		v := opt(o.field, o.option)
		*o.dst = e.items(vars[o.field], v)
	}
	return uc, vars
}

// collidingKeys refuses two upstreams whose hosts turn into the same
// <HOST> of PULLTHROUGH_UPSTREAM_<HOST>_* (registry.corp.example and
// registry-corp.example): the variables meant for one would be read for
// both, and a look-alike host would get the other's credentials.
func collidingKeys(e *env, listVar string, entries []upstreamEntry) {
	first := map[string]string{}
	for _, ent := range entries {
		k := envKey(ent.host)
		if other, ok := first[k]; ok && other != ent.host {
			e.bad(listVar, "upstreams %q and %q would both read PULLTHROUGH_UPSTREAM_%s_* (credentials included): serve one of them, or each from its own mirror", other, ent.host, k)
			continue
		}
		first[k] = ent.host
	}
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

// hostsFor is the Host names the mirror answers to: any under Lambda,
// else the configured list (IP literals are always answered).
func hostsFor(lambda bool, hosts []string) []string {
	if lambda {
		return nil
	}
	return hosts
}
