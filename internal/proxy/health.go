package proxy

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"time"

	"github.com/pullthrough/pullthrough/internal/oci"
)

// Health is the state of the mirror for a health endpoint: whether its
// store answers, and what it knows of each upstream.
type Health struct {
	// Store is "ok", or why the store did not answer.
	Store     string                    `json:"store"`
	Upstreams map[string]UpstreamHealth `json:"upstreams"`
}

// UpstreamHealth is what the mirror has learnt of one upstream (package
// upstream's Facts) and whether it is backing off.
type UpstreamHealth struct {
	BackingOff        bool    `json:"backing_off"`
	Failing           bool    `json:"failing"` // it hung or refused connections: asked again only by a probe
	CDN               bool    `json:"cdn"`
	HeadlessManifests bool    `json:"headless_manifests"`
	FillRate          float64 `json:"fill_rate_bytes_per_second"`
}

// healthKey is looked up to see that the store answers: one read (a
// HeadObject on S3), never a write, so a health check costs no PUT.
const healthKey = "health/probe"

// Health checks the store with one read, bounded by 5 s, and reports each
// upstream's state without asking it. ok is false when the store does not
// answer: the mirror can then serve nothing.
func (p *Proxy) Health(ctx context.Context) (h Health, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	h = Health{Store: "ok", Upstreams: map[string]UpstreamHealth{}}
	if _, err := p.store.Stat(ctx, healthKey); err != nil && !errors.Is(err, fs.ErrNotExist) {
		h.Store = oci.Truncate(redactURLs(err.Error()))
	}
	for host, u := range p.upstreams {
		f := u.Facts()
		h.Upstreams[host] = UpstreamHealth{BackingOff: u.BackingOff(), Failing: u.Failing(), CDN: f.CDN, HeadlessManifests: f.Headless, FillRate: f.FillRate}
	}
	return h, h.Store == "ok"
}

// Guard applies the mirror's access rules (client CIDRs, credentials,
// browser requests) to another handler of the same server, such as its
// metrics or health endpoint.
func (p *Proxy) Guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", contentSecurityPolicy)
		if err := p.access.check(r); err != nil {
			w.Header().Set("Connection", "close")
			oci.Write(w, r, oci.From(err))
			return
		}
		h.ServeHTTP(w, r)
	})
}
