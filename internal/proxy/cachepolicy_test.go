package proxy

import (
	"errors"
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

// TestTableGetAnswer: what an upstream's GET status becomes, through the
// one error mapping (upstreamError) the GET uses.
func TestTableGetAnswer(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   cache.GetKind
	}{
		{http.StatusNotFound, cache.GetNotFound},
		{http.StatusUnauthorized, cache.GetDenied},
		{http.StatusForbidden, cache.GetDenied},
		{http.StatusTooManyRequests, cache.GetFailed},
		{http.StatusInternalServerError, cache.GetFailed},
		{http.StatusBadGateway, cache.GetFailed},
		{http.StatusBadRequest, cache.GetFailed},
	} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			err := error(&upstream.StatusError{Status: tc.status})
			if got := getAnswerOf(cache.Manifest{}, false, err).Kind; got != tc.want {
				t.Errorf("got kind %d, want %d", got, tc.want)
			}
		})
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
