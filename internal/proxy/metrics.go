package proxy

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pullthrough/pullthrough/internal/oci"
)

// requestStats collects what one request made the mirror do, for its log
// line and, in Lambda, CloudWatch metrics. It travels in the request context
// so the upstream client and the filler can report into it.
type requestStats struct {
	filledBytes        atomic.Int64
	upstreamErrors     atomic.Int64
	upstreamThrottled  atomic.Int64
	rateLimitRemaining atomic.Int64           // -1: the upstream did not say
	rateLimitHeader    atomic.Pointer[string] // the same, as the upstream wrote it
}

type statsKey struct{}

func withStats(ctx context.Context) (context.Context, *requestStats) {
	s := &requestStats{}
	s.rateLimitRemaining.Store(-1)
	return context.WithValue(ctx, statsKey{}, s), s
}

// statsFrom never returns nil, so callers need not check.
func statsFrom(ctx context.Context) *requestStats {
	if s, ok := ctx.Value(statsKey{}).(*requestStats); ok {
		return s
	}
	s := &requestStats{}
	s.rateLimitRemaining.Store(-1)
	return s
}

// noteUpstream records an upstream answer: errors, throttling and the
// rate-limit headers Docker Hub sends ("ratelimit-remaining: 76;w=21600").
func (s *requestStats) noteUpstream(resp *http.Response, err error) {
	if err != nil {
		s.upstreamErrors.Add(1)
		return
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		s.upstreamThrottled.Add(1)
		s.upstreamErrors.Add(1)
	case resp.StatusCode >= 500:
		s.upstreamErrors.Add(1)
	}
	if v := resp.Header.Get("Ratelimit-Remaining"); v != "" {
		n, _, _ := strings.Cut(v, ";")
		if r, err := strconv.ParseInt(strings.TrimSpace(n), 10, 64); err == nil && r >= 0 {
			s.rateLimitRemaining.Store(r)
			v = oci.Truncate(strings.TrimSpace(v))
			s.rateLimitHeader.Store(&v)
		}
	}
}

// RequestStats is what one request made the mirror do: the figures of its
// log line, and in Lambda of its CloudWatch metrics (Config.OnRequest).
type RequestStats struct {
	Route    string // base, manifest, blob, tags, referrers, warm or unknown
	Upstream string // the upstream host, "" if none was chosen
	Cache    string // the X-Pullthrough-Cache result: hit, miss, revalidated, stale, passthrough, upstream or ""
	Status   int    // the HTTP status answered
	// FilledBytes are the verified bytes of fills this request started.
	FilledBytes int64
	// UpstreamErrors and UpstreamThrottled count upstream attempts that
	// failed (no answer, 5xx, 429) and were throttled (429).
	UpstreamErrors, UpstreamThrottled int64
	// RateLimitRemaining is the upstream's ratelimit-remaining, -1 if it
	// did not say.
	RateLimitRemaining int64
}

// Hit reports a cached answer (a hit, or a revalidated one): the Hits
// metric.
func (s RequestStats) Hit() bool { return s.Cache == cacheHit || s.Cache == cacheRevalidated }

func (s *requestStats) summary(route, upstream, cache string, status int) RequestStats {
	return RequestStats{
		Route: route, Upstream: upstream, Cache: cache, Status: status,
		FilledBytes: s.filledBytes.Load(), UpstreamErrors: s.upstreamErrors.Load(), UpstreamThrottled: s.upstreamThrottled.Load(),
		RateLimitRemaining: s.rateLimitRemaining.Load(),
	}
}

// logAttrs are the request's counters as log attributes, and, when emf is
// set, the CloudWatch Embedded Metric Format envelope that turns the same
// line into metrics (namespace "pullthrough", dimensions Function, when
// known, and Upstream).
func (s *requestStats) logAttrs(cache, upstream, function string, emf bool, now time.Time) []any {
	attrs := []any{
		"filled_bytes", s.filledBytes.Load(),
		"upstream_errors", s.upstreamErrors.Load(),
	}
	remaining := s.rateLimitRemaining.Load()
	if remaining >= 0 {
		attrs = append(attrs, "ratelimit_remaining", remaining)
	}
	if !emf {
		return attrs
	}
	one := func(b bool) int {
		if b {
			return 1
		}
		return 0
	}
	metrics := []emfMetric{
		{"Hits", "Count"}, {"Misses", "Count"}, {"StaleServes", "Count"},
		{"BytesFilled", "Bytes"}, {"UpstreamErrors", "Count"}, {"UpstreamThrottled", "Count"},
	}
	attrs = append(attrs,
		"Hits", one(cache == cacheHit || cache == cacheRevalidated),
		"Misses", one(cache == cacheMiss),
		"StaleServes", one(cache == cacheStale),
		"BytesFilled", s.filledBytes.Load(),
		"UpstreamErrors", s.upstreamErrors.Load(),
		"UpstreamThrottled", s.upstreamThrottled.Load(),
	)
	if remaining >= 0 {
		metrics = append(metrics, emfMetric{"UpstreamRateLimitRemaining", "Count"})
		attrs = append(attrs, "UpstreamRateLimitRemaining", remaining)
	}
	return emfAttrs(attrs, upstream, function, metrics, now)
}

// emfAttrs ends a log line whose attrs carry the values of metrics with the
// CloudWatch Embedded Metric Format envelope (namespace "pullthrough",
// dimensions Function, when known, and Upstream).
func emfAttrs(attrs []any, upstream, function string, metrics []emfMetric, now time.Time) []any {
	if upstream == "" {
		upstream = "none"
	}
	attrs = append(attrs, "Upstream", upstream)
	dims := []string{"Upstream"}
	if function != "" {
		// Deployments in one account and region must not share metrics.
		dims = []string{"Function", "Upstream"}
		attrs = append(attrs, "Function", function)
	}
	return append(attrs, slog.Group("_aws",
		"Timestamp", now.UnixMilli(),
		"CloudWatchMetrics", []emfDirective{{Namespace: "pullthrough", Dimensions: [][]string{dims}, Metrics: metrics}},
	))
}

type emfDirective struct {
	Namespace  string      `json:"Namespace"`
	Dimensions [][]string  `json:"Dimensions"`
	Metrics    []emfMetric `json:"Metrics"`
}

type emfMetric struct {
	Name string `json:"Name"`
	Unit string `json:"Unit"`
}
