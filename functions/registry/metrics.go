package main

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pullthrough/pullthrough/internal/proxy"
)

// Paths the local server answers beside the registry API, under the same
// access rules.
const (
	metricsPath = "/metrics"
	healthPath  = "/_pullthrough/health"
)

// localMetrics are the local server's Prometheus metrics: the counters the
// Lambda's CloudWatch EMF log lines carry (README "Observability"), by
// upstream, plus requests by route and status.
type localMetrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec
	hits         *prometheus.CounterVec
	misses       *prometheus.CounterVec
	stale        *prometheus.CounterVec
	filled       *prometheus.CounterVec
	upErrors     *prometheus.CounterVec
	throttled    *prometheus.CounterVec
	fillFailures *prometheus.CounterVec
	remaining    *prometheus.GaugeVec
}

func newLocalMetrics() *localMetrics {
	byUpstream := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "pullthrough", Name: name, Help: help}, []string{"upstream"})
	}
	m := &localMetrics{
		reg:          prometheus.NewRegistry(),
		requests:     prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "pullthrough", Name: "requests_total", Help: "Requests answered, by route and HTTP status."}, []string{"route", "code"}),
		hits:         byUpstream("hits_total", "Answers from the cache (hit or revalidated): EMF Hits."),
		misses:       byUpstream("misses_total", "Answers that filled the cache: EMF Misses."),
		stale:        byUpstream("stale_serves_total", "Cached answers served stale because the upstream failed: EMF StaleServes."),
		filled:       byUpstream("filled_bytes_total", "Verified bytes filled from the upstream: EMF BytesFilled."),
		upErrors:     byUpstream("upstream_errors_total", "Upstream attempts without an answer or with 5xx or 429: EMF UpstreamErrors."),
		throttled:    byUpstream("upstream_throttled_total", "Upstream attempts answered 429: EMF UpstreamThrottled."),
		fillFailures: byUpstream("fill_failures_total", "Blob fills that failed: EMF FillFailures."),
		remaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "pullthrough", Name: "upstream_ratelimit_remaining",
			Help: "The upstream's last ratelimit-remaining (Docker Hub: pulls left in its window): EMF UpstreamRateLimitRemaining."}, []string{"upstream"}),
	}
	m.reg.MustRegister(m.requests, m.hits, m.misses, m.stale, m.filled, m.upErrors, m.throttled, m.fillFailures, m.remaining,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// observe is proxy.Config.OnRequest.
func (m *localMetrics) observe(s proxy.RequestStats) {
	m.requests.WithLabelValues(s.Route, strconv.Itoa(s.Status)).Inc()
	if s.Upstream == "" {
		return
	}
	up := s.Upstream
	switch {
	case s.Hit():
		m.hits.WithLabelValues(up).Inc()
	case s.Cache == "miss":
		m.misses.WithLabelValues(up).Inc()
	case s.Cache == "stale":
		m.stale.WithLabelValues(up).Inc()
	}
	m.filled.WithLabelValues(up).Add(float64(s.FilledBytes))
	m.upErrors.WithLabelValues(up).Add(float64(s.UpstreamErrors))
	m.throttled.WithLabelValues(up).Add(float64(s.UpstreamThrottled))
	if s.RateLimitRemaining >= 0 {
		m.remaining.WithLabelValues(up).Set(float64(s.RateLimitRemaining))
	}
}

// fillFailed is proxy.Config.OnFillFailure.
func (m *localMetrics) fillFailed(upstream string) { m.fillFailures.WithLabelValues(upstream).Inc() }

// localHandler is the local server's handler: the mirror, its Prometheus
// metrics and its health, all under the mirror's access rules.
func localHandler(p *proxy.Proxy, m *localMetrics) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(metricsPath, p.Guard(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})))
	mux.Handle(healthPath, p.Guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, ok := p.Health(r.Context())
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(h)
	})))
	mux.Handle("/", p)
	return mux
}
