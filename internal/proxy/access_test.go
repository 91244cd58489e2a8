package proxy_test

import (
	"net/http"
	"testing"

	"github.com/pullthrough/pullthrough/internal/proxy"
)

// A web page must not be able to drive the mirror: neither a cross-site
// <img>/fetch() at the mirror's address (browsers mark it with
// Sec-Fetch-Site and Origin) nor a DNS name the attacker rebound to the
// mirror's address (Host). Registry clients send none of these.
func TestBrowserAndForeignHostRequestsRefused(t *testing.T) {
	cfg := proxy.Config{ManifestTTL: proxy.RevalidateAlways, Access: proxy.AccessConfig{Hosts: []string{"localhost", "mirror.internal"}}}
	m, hub, _, _ := newTwoRegistries(t, cfg, proxy.UpstreamConfig{}, proxy.UpstreamConfig{})
	path := "/v2/library/alpine/manifests/latest"
	for _, tc := range []struct {
		name   string
		host   string
		header http.Header
		want   int
	}{
		{name: "rebound DNS name", host: "attacker.example:5000", want: http.StatusForbidden},
		{name: "rebound name without port", host: "attacker.example", want: http.StatusForbidden},
		{name: "cross-site image load", header: http.Header{"Sec-Fetch-Site": {"cross-site"}, "Sec-Fetch-Mode": {"no-cors"}}, want: http.StatusForbidden},
		{name: "same-site other origin", header: http.Header{"Sec-Fetch-Site": {"same-site"}}, want: http.StatusForbidden},
		{name: "cross-origin fetch", header: http.Header{"Origin": {"https://attacker.example"}}, want: http.StatusForbidden},
		{name: "IP literal", want: http.StatusOK},
		{name: "configured name", host: "mirror.internal:5000", want: http.StatusOK},
		{name: "localhost, any case", host: "LocalHost:5000", want: http.StatusOK},
		{name: "typed into the address bar", header: http.Header{"Sec-Fetch-Site": {"none"}}, want: http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub.Reset()
			req, err := http.NewRequest(http.MethodGet, m.URL+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header = tc.header
			if req.Header == nil {
				req.Header = http.Header{}
			}
			if tc.host != "" {
				req.Host = tc.host
			}
			resp := send(t, req)
			if resp.StatusCode != tc.want {
				t.Fatalf("got %d, want %d (%s)", resp.StatusCode, tc.want, resp.body)
			}
			if tc.want == http.StatusForbidden {
				assertOCIError(t, resp, "DENIED")
				if n := hub.Total(); n != 0 {
					t.Errorf("refused request caused %d upstream requests, want 0", n)
				}
			}
		})
	}
	// An empty Hosts list (as under Lambda) answers any name.
	open, _, _, _ := newTwoRegistries(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{}, proxy.UpstreamConfig{})
	req, _ := http.NewRequest(http.MethodGet, open.URL+path, nil)
	req.Host = "abc.lambda-url.us-east-1.on.aws"
	if resp := send(t, req); resp.StatusCode != http.StatusOK {
		t.Errorf("no Hosts configured: got %d, want 200", resp.StatusCode)
	}
}
