package proxy_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/pullthrough/pullthrough/internal/proxy"
)

// A wrong client credential is answered and logged as rejected, a missing
// one as required: both 401 with the challenge (clients then retry with
// what they have), each request line naming its route, error code and
// reason, never the credential or which part of it was wrong.
func TestRejectedCredentialsAreToldFromMissingOnes(t *testing.T) {
	m, _ := newMirror(t, proxy.Config{Access: proxy.AccessConfig{Tokens: []string{"right-token"}, Users: map[string]string{"ci": "right-password"}}}, proxy.UpstreamConfig{})
	u := m.URL + "/v2/org/app/manifests/1"
	wrongUser, _ := http.NewRequest(http.MethodGet, u, nil)
	wrongUser.SetBasicAuth("ci", "wrong-password")
	for _, tc := range []struct {
		name, auth, wantMsg string
	}{
		{"no credentials", "", "authentication required"},
		{"wrong token", "Bearer wrong-token", "credentials rejected"},
		{"wrong password", wrongUser.Header.Get("Authorization"), "credentials rejected"},
		{"unknown scheme", "Negotiate abc", "credentials rejected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m.Logs.Reset()
			h := http.Header{}
			if tc.auth != "" {
				h.Set("Authorization", tc.auth)
			}
			resp := do(t, http.MethodGet, u, h)
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
				t.Fatalf("got %d with challenge %q, want 401 with one", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
			if !strings.Contains(string(resp.body), tc.wantMsg) {
				t.Errorf("got body %s, want it to say %q", resp.body, tc.wantMsg)
			}
			line := requestLines(t, m, 1)[0]
			if line["route"] != "manifest" || line["code"] != "UNAUTHORIZED" || line["error"] != tc.wantMsg {
				t.Errorf("got route %v code %v error %v, want manifest UNAUTHORIZED %q", line["route"], line["code"], line["error"], tc.wantMsg)
			}
			if logs := m.Logs.String(); strings.Contains(logs, "wrong-token") || strings.Contains(logs, "wrong-password") || strings.Contains(logs, "right-") {
				t.Errorf("a credential reached the log: %s", logs)
			}
		})
	}
}
