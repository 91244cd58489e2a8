package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pullthrough/pullthrough/internal/testenv"
)

// The local server answers Prometheus /metrics with the counters the
// Lambda's EMF lines carry, and a health endpoint with the store's and the
// upstreams' state, with real figures after a pull, and both under the
// mirror's access rules.
func TestLocalMetricsAndHealth(t *testing.T) {
	reg := testenv.InProcessRegistry(t)
	up := testenv.NewUpstream(t, reg)
	testenv.SeedImage(t, reg, "library/app:1", 32<<10, 2)
	mirror, _ := testenv.StartMirror(t, testenv.BuildMirror(t, false),
		"PULLTHROUGH_UPSTREAMS=docker.io="+up.URL.String(), "PULLTHROUGH_STORE=file://"+t.TempDir(),
		"PULLTHROUGH_CLIENT_TOKENS=metrics-token")
	get := func(path string, auth bool) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, mirror+path, nil)
		if auth {
			req.Header.Set("Authorization", "Bearer metrics-token")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, p := range []string{metricsPath, healthPath} {
		if code, _ := get(p, false); code != http.StatusUnauthorized {
			t.Errorf("%s without the client token: got %d, want 401", p, code)
		}
	}
	testenv.PullImage(t, mirror, "library/app:1", remote.WithAuth(&authn.Bearer{Token: "metrics-token"}))
	code, body := get(metricsPath, true)
	if code != http.StatusOK {
		t.Fatalf("metrics: got %d", code)
	}
	for _, want := range []string{
		`pullthrough_misses_total{upstream="docker.io"}`,
		`pullthrough_filled_bytes_total{upstream="docker.io"}`,
		`pullthrough_requests_total{code="200",route="manifest"}`,
		`pullthrough_upstream_errors_total{upstream="docker.io"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(body, `pullthrough_filled_bytes_total{upstream="docker.io"} 0`+"\n") {
		t.Error("metrics: no filled bytes counted after a cold pull")
	}
	code, body = get(healthPath, true)
	var h struct {
		Store     string                     `json:"store"`
		Upstreams map[string]json.RawMessage `json:"upstreams"`
	}
	if err := json.Unmarshal([]byte(body), &h); err != nil || code != http.StatusOK || h.Store != "ok" || h.Upstreams["docker.io"] == nil {
		t.Errorf("health: got %d %s, want 200 with store ok and docker.io", code, body)
	}
}
