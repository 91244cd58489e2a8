package testenv

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestDockerHubLikeTokenRealmAndCDN: the Docker Hub-like member wants a
// token on every /v2/ request, /v2/ itself included, from a realm on
// another host, good only for the repository it was asked for; sends blob GETs and HEADs to a signed CDN URL outside
// /v2/ on a third host; and its CDN refuses an Authorization header and a
// bad or expired signature.
func TestDockerHubLikeTokenRealmAndCDN(t *testing.T) {
	hub := DockerHubLike(t)
	img := SeedImage(t, hub.Reg, "library/alpine:3", 4<<10, 1)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	want, _ := layers[0].Compressed()
	wantBody, _ := io.ReadAll(want)
	base := hub.Front.URL.String()
	get := func(method, u, auth string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, u, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := NoRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}

	realm := `Bearer realm="` + hub.Realm.String() + `/token",service="registry.docker.io"`
	for _, tc := range []struct{ path, challenge string }{
		{"/v2/", realm},
		{"/v2/library/alpine/manifests/3", realm + `,scope="repository:library/alpine:pull"`},
		{"/v2/library/alpine/blobs/" + ld.String(), realm + `,scope="repository:library/alpine:pull"`},
	} {
		resp := get(http.MethodGet, base+tc.path, "")
		if got := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != 401 || got != tc.challenge {
			t.Errorf("%s without a token: got %d %q, want 401 %q", tc.path, resp.StatusCode, got, tc.challenge)
		}
	}
	if resp := get(http.MethodGet, base+"/token", ""); resp.StatusCode == 200 {
		t.Errorf("the registry host serves tokens; want them only on the realm host")
	}

	tok := hub.PullToken(t, "library/alpine")
	if resp := get(http.MethodGet, base+"/v2/", tok); resp.StatusCode != 200 {
		t.Errorf("/v2/ with a token: got %d, want 200", resp.StatusCode)
	}
	other := get(http.MethodGet, base+"/v2/library/other/manifests/1", tok)
	if got := other.Header.Get("WWW-Authenticate"); other.StatusCode != 401 || !strings.HasSuffix(got, `scope="repository:library/other:pull",error="insufficient_scope"`) {
		t.Errorf("another repository with library/alpine's token: got %d %q, want 401 insufficient_scope", other.StatusCode, got)
	}
	var loc *url.URL
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		resp := get(method, base+"/v2/library/alpine/blobs/"+ld.String(), tok)
		l, err := resp.Location()
		if resp.StatusCode != http.StatusTemporaryRedirect || err != nil || l.Host != hub.Other.Host || strings.HasPrefix(l.Path, "/v2/") || l.Query().Get("verify") == "" {
			t.Fatalf("blob %s: got %d to %v, want 307 to a signed URL on the CDN host %s, outside /v2/", method, resp.StatusCode, l, hub.Other.Host)
		}
		loc = l
	}

	expired := *loc
	p := loc.Path
	expired.RawQuery = hub.cdn.sign(p, time.Now().Add(-time.Minute))
	tampered := *loc
	tampered.RawQuery = strings.Replace(loc.RawQuery, "verify=", "verify=1", 1)
	for _, tc := range []struct {
		name, url, auth string
		status          int
	}{
		{"signed", loc.String(), "", 200},
		{"signed, with the registry token", loc.String(), tok, 400},
		{"tampered signature", tampered.String(), "", 403},
		{"expired signature", expired.String(), "", 403},
		{"no signature", hub.Other.String() + p, "", 403},
	} {
		resp := get(http.MethodGet, tc.url, tc.auth)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != tc.status || tc.status == 200 && string(body) != string(wantBody) {
			t.Errorf("CDN, %s: got %d (%d bytes), want %d", tc.name, resp.StatusCode, len(body), tc.status)
		}
	}
	if got := hub.ForeignAuth(); len(got) != 1 || got[0] != tok {
		t.Errorf("ForeignAuth: got %q, want the one token sent to the CDN", got)
	}
}
