package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/pullthrough/pullthrough/internal/cache"
	"github.com/pullthrough/pullthrough/internal/field"
	"github.com/pullthrough/pullthrough/internal/proxy"
)

// Bounds of the start-up checks. Lambda gives a function's init 10 s in
// all; both checks run at once.
const (
	storeProbeTimeout    = 6 * time.Second
	upstreamCheckTimeout = 5 * time.Second
)

// prober is a store that can prove itself usable (store.S3, store.Filesystem).
type prober interface {
	Probe(ctx context.Context) error
}

// startupChecks probes the store, checks its layout version
// (cache.CheckLayout: a store written by a newer release is refused) and
// tries each upstream's /v2/ once. A
// store that cannot be written, read and deleted in is fatal: every pull
// would fail, and clients would fall back to the upstream silently. An
// upstream that does not answer is only a warning: it may be down for now,
// and cached content is served meanwhile.
func startupChecks(ctx context.Context, st proxy.Store, ups []proxy.UpstreamConfig, logger *slog.Logger) error {
	var wg sync.WaitGroup
	defer wg.Wait() // no check outlives the init
	for _, u := range ups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := checkUpstream(ctx, u.URL); err != nil {
				logger.Warn("UPSTREAM UNREACHABLE AT START: pulls of what is not cached fail until it answers",
					"upstream", u.Host, "url", redactURL(u.URL), "error", err.Error())
			}
		}()
	}
	sctx, cancel := context.WithTimeout(ctx, storeProbeTimeout)
	defer cancel()
	if p, ok := st.(prober); ok {
		if err := p.Probe(sctx); err != nil {
			return err
		}
	}
	// After the probe, so that a store that cannot be used says why first.
	return cache.CheckLayout(sctx, st, version)
}

// checkUpstream asks an upstream's /v2/ once, anonymously: 200, or 401
// with a challenge, is a registry that answers.
func checkUpstream(ctx context.Context, base string) error {
	ctx, cancel := context.WithTimeout(ctx, upstreamCheckTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
		return fmt.Errorf("GET /v2/ answered %s, want 200 or 401 from a registry", resp.Status)
	}
	return nil
}

// startLine is the effective configuration, as the start log line shows
// it: what a typo changed is visible there. It never holds a secret:
// credentials and client tokens are counted or named by kind, never shown.
func startLine(cfg Config, storeAttrs []any) []any {
	mode := "local"
	if cfg.Lambda {
		mode = "lambda"
	}
	attrs := []any{"version", version, "mode", mode}
	if !cfg.Lambda {
		attrs = append(attrs, "addr", cfg.Addr)
	}
	ups := map[string]string{}
	creds := map[string]string{}
	for _, u := range cfg.Upstreams {
		ups[u.Host] = redactURL(u.URL)
		switch {
		case u.Token != "":
			creds[u.Host] = "token"
		case u.Username != "":
			creds[u.Host] = "basic"
		}
	}
	def := cfg.Proxy.DefaultUpstream
	if def == "" && len(cfg.Upstreams) > 0 {
		def = cfg.Upstreams[0].Host
	}
	var hosts any = cfg.Proxy.Access.Hosts
	if cfg.Lambda {
		hosts = "any (function URL)"
	}
	a := cfg.Proxy.Access
	var kinds []string
	for _, k := range []struct {
		name string
		n    int
	}{{"tokens", len(a.Tokens)}, {"users", len(a.Users)}, {"cidrs", len(a.CIDRs)}} {
		if k.n > 0 {
			kinds = append(kinds, k.name)
		}
	}
	access := "open"
	if len(kinds) > 0 {
		access = strings.Join(kinds, "+")
	}
	p := cfg.Proxy
	retention := "off"
	if cfg.Retention > 0 {
		retention = field.Duration(cfg.Retention)
	}
	maxBlob := field.Size(p.MaxBlobSize)
	if p.MaxBlobSize == 0 {
		maxBlob = "none"
	}
	manifestTTL := field.Duration(p.ManifestTTL)
	if p.ManifestTTL < 0 {
		manifestTTL = "0s"
	}
	return append(attrs,
		slog.Group("store", storeAttrs...),
		"upstreams", ups,
		"upstream_credentials", creds,
		"default_upstream", def,
		"hosts", hosts,
		slog.Group("access", "mode", access, "tokens", len(a.Tokens), "users", len(a.Users), "cidrs", len(a.CIDRs)),
		slog.Group("fill",
			"large_blob_policy", p.LargeBlobPolicy, "large_blob_size", field.Size(p.LargeBlobSize),
			"max_blob_size", maxBlob, "max_fills", p.MaxFills,
			"parts", p.FillParts, "part_size", field.Size(p.FillPartSize),
			"timeout", field.Duration(p.FillTimeout), "wait", field.Duration(p.FillWait), "lease_ttl", field.Duration(p.LeaseTTL),
			"own_invocations", cfg.Lambda && cfg.FunctionName != ""),
		"manifest_ttl", manifestTTL,
		"presign_ttl", field.Duration(p.PresignTTL),
		"retention", retention,
	)
}

// redactURL drops any user information and query from a URL for the log.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}
