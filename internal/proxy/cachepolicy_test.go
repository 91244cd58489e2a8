package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullthrough/pullthrough/internal/cache"
	"github.com/pullthrough/pullthrough/internal/upstream"
)

var (
	checkedAt = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	movedDg   = digest.FromString("moved manifest")
)

// TestTableGetAnswer: what an upstream's GET answer becomes for the
// policy. Only the registry's own answers (an OCI error body, no web page)
// say "gone" or "denied"; the same statuses from a login wall, a captive
// portal or a CDN challenge are trouble.
func TestTableGetAnswer(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  *upstream.StatusError
		want cache.GetKind
	}{
		{"404", &upstream.StatusError{Status: http.StatusNotFound, Code: "MANIFEST_UNKNOWN"}, cache.GetGone},
		{"404 without a body", &upstream.StatusError{Status: http.StatusNotFound}, cache.GetGone},
		{"410", &upstream.StatusError{Status: http.StatusGone}, cache.GetGone},
		{"451", &upstream.StatusError{Status: http.StatusUnavailableForLegalReasons}, cache.GetGone},
		{"401", &upstream.StatusError{Status: http.StatusUnauthorized, Code: "UNAUTHORIZED"}, cache.GetDenied},
		{"403", &upstream.StatusError{Status: http.StatusForbidden, Code: "DENIED"}, cache.GetDenied},
		{"403 without an OCI error body", &upstream.StatusError{Status: http.StatusForbidden}, cache.GetFailed},
		{"403 CDN challenge page", &upstream.StatusError{Status: http.StatusForbidden, Code: "DENIED", Page: true}, cache.GetFailed},
		{"404 web page", &upstream.StatusError{Status: http.StatusNotFound, Page: true}, cache.GetFailed},
		{"429", &upstream.StatusError{Status: http.StatusTooManyRequests}, cache.GetFailed},
		{"500", &upstream.StatusError{Status: http.StatusInternalServerError}, cache.GetFailed},
		{"502", &upstream.StatusError{Status: http.StatusBadGateway}, cache.GetFailed},
		{"400", &upstream.StatusError{Status: http.StatusBadRequest}, cache.GetFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := getAnswerOf(cache.Manifest{}, false, fmt.Errorf("get: %w", tc.err)).Kind; got != tc.want {
				t.Errorf("got kind %d, want %d", got, tc.want)
			}
		})
	}
	if got := getAnswerOf(cache.Manifest{}, false, fmt.Errorf("200 text/html: %w", upstream.ErrNotRegistry)).Kind; got != cache.GetFailed {
		t.Errorf("a 200 that is no manifest: got kind %d, want %d (failed)", got, cache.GetFailed)
	}
	if got := getAnswerOf(cache.Manifest{}, false, errors.New("dial tcp: refused")).Kind; got != cache.GetFailed {
		t.Errorf("transport error: got kind %d, want %d (failed)", got, cache.GetFailed)
	}
	if got := getAnswerOf(cache.Manifest{}, true, nil); got.Kind != cache.GetOK || !got.NotModified {
		t.Errorf("304: got %+v, want ok, not modified", got)
	}
	if got := getAnswerOf(cache.Manifest{Digest: movedDg}, false, nil); got.Kind != cache.GetOK || got.Digest != movedDg {
		t.Errorf("200: got %+v, want ok with %s", got, movedDg)
	}
}

// TestTableManifestTTLZero: zero ManifestTTL means the default, as every
// other zero Config field does; RevalidateAlways asks every time.
func TestTableManifestTTLZero(t *testing.T) {
	up, err := NewUpstream(UpstreamConfig{Host: DockerHubHost, URL: DockerHubURL})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		ttl       time.Duration
		wantTTL   time.Duration
		wantFresh bool // one second after a check
	}{
		{"zero is the default", 0, DefaultManifestTTL, true},
		{"an hour", time.Hour, time.Hour, true},
		{"RevalidateAlways", RevalidateAlways, RevalidateAlways, false},
		{"any negative value", -time.Hour, -time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(Config{ManifestTTL: tc.ttl}, nil, []*Upstream{up}, nil)
			if err != nil {
				t.Fatal(err)
			}
			pol := p.cache.Policy()
			if pol.ManifestTTL != tc.wantTTL {
				t.Errorf("got ManifestTTL %s, want %s", pol.ManifestTTL, tc.wantTTL)
			}
			if got := pol.Fresh(checkedAt, checkedAt.Add(time.Second)); got != tc.wantFresh {
				t.Errorf("got fresh %v a second after a check, want %v", got, tc.wantFresh)
			}
		})
	}
}
