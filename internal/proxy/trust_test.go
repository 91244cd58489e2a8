package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// An upstream's answer for a tag, as a stand-in writes it.
type tagAnswer func(w http.ResponseWriter, r *http.Request)

// registryError answers as a registry does: an OCI error body.
func registryError(status int, code string) tagAnswer {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"errors":[{"code":%q,"message":"%s"}]}`, code, http.StatusText(status))
	}
}

// page answers with an HTML page, as what stands between the mirror and the
// registry does on a bad day.
func page(status int, header http.Header, html string) tagAnswer {
	return func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Type", "text/html; charset=UTF-8")
		w.WriteHeader(status)
		fmt.Fprint(w, html)
	}
}

// Docker Hub's CDN challenge: when Cloudflare challenges the mirror's
// address, Docker Hub answers 403 with an HTML "Just a moment..." page and
// cf-mitigated: challenge (harbor #23145, #23025; FACTS.md "Docker Hub's
// CDN challenge").
var cdnChallenge = page(http.StatusForbidden, http.Header{"Cf-Mitigated": {"challenge"}},
	`<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title></head><body><script>/* challenge */</script></body></html>`)

// A captive portal or login wall answering 200 with its own page for any
// URL (harbor #23882 / PR #23911, registry.k8s.io #287).
var captivePortal = page(http.StatusOK, nil, `<html><head><title>Sign in to the network</title></head><body><script>alert(document.domain)</script></body></html>`)

// TestUpstreamAnswersForACachedTag: only the registry's own answers say
// anything about a tag. Its 404, 410 (Gone) and 451 (Unavailable For Legal
// Reasons) end a cached tag's serving; its 401/403 after the token flow, with
// an OCI error body, deny it. A web page, a CDN challenge, a 401 without an
// OCI error body, or a 200 whose body is no registry manifest is upstream
// trouble: the cached tag is served stale (the reason logged) and stays what
// it was, and a tag the mirror never cached answers 502 so that clients fall
// back to their next endpoint.
func TestUpstreamAnswersForACachedTag(t *testing.T) {
	for _, tc := range []struct {
		name       string
		answer     tagAnswer
		wantCached int    // status for the cached tag
		wantCache  string // its X-Pullthrough-Cache
		wantCold   int    // status for a tag never cached
		wantCode   string // OCI code of a failure, cached or cold
	}{
		{"registry 404", registryError(http.StatusNotFound, "MANIFEST_UNKNOWN"), 404, "", 404, "MANIFEST_UNKNOWN"},
		{"registry 410 Gone", registryError(http.StatusGone, "MANIFEST_UNKNOWN"), 404, "", 404, "MANIFEST_UNKNOWN"},
		{"registry 451 legal takedown", registryError(http.StatusUnavailableForLegalReasons, "DENIED"), 404, "", 404, "MANIFEST_UNKNOWN"},
		{"registry 403 DENIED", registryError(http.StatusForbidden, "DENIED"), 403, "", 403, "DENIED"},
		{"CDN challenge 403 page", cdnChallenge, 200, "stale", 502, "UNAVAILABLE"},
		{"login wall 401 page", page(http.StatusUnauthorized, nil, "<html><body>Please log in</body></html>"), 200, "stale", 502, "UNAVAILABLE"},
		{"proxy 403 without an OCI error body", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "Forbidden by policy", http.StatusForbidden)
		}, 200, "stale", 502, "UNAVAILABLE"},
		{"web server 404 page", page(http.StatusNotFound, nil, "<html><body><h1>404 Not Found</h1><hr>nginx</body></html>"), 200, "stale", 502, "UNAVAILABLE"},
		{"captive portal 200 page", captivePortal, 200, "stale", 502, "UNAVAILABLE"},
		{"200 of another media type", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "image/svg+xml")
			fmt.Fprint(w, `<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`)
		}, 200, "stale", 502, "UNAVAILABLE"},
		{"200 JSON naming a non-manifest type", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"schemaVersion":2,"mediaType":"text/html","layers":[]}`)
		}, 200, "stale", 502, "UNAVAILABLE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := testenv.InProcessRegistry(t)
			up := testenv.NewUpstream(t, reg)
			img := testenv.SeedImage(t, reg, "org/app:1", 2<<10, 1)
			testenv.SeedImage(t, reg, "org/app:cold", 2<<10, 1)
			want, _ := img.Digest()
			m := mirrorFor(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{}, up)
			testenv.PullImage(t, m.URL, "org/app:1")

			up.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
				if !strings.HasPrefix(r.URL.Path, "/v2/org/app/manifests/") {
					return false
				}
				tc.answer(w, r)
				return true
			})
			resp := do(t, http.MethodGet, m.URL+"/v2/org/app/manifests/1", nil)
			if resp.StatusCode != tc.wantCached || resp.Header.Get("X-Pullthrough-Cache") != tc.wantCache {
				t.Fatalf("cached tag: got %d (cache %q), want %d (cache %q): %s", resp.StatusCode, resp.Header.Get("X-Pullthrough-Cache"), tc.wantCached, tc.wantCache, resp.body)
			}
			if tc.wantCached == http.StatusOK {
				if got := resp.Header.Get("Docker-Content-Digest"); got != want.String() {
					t.Errorf("cached tag: got digest %s, want %s (the cached one)", got, want)
				}
				if !strings.Contains(m.Logs.String(), "serving stale") {
					t.Errorf("no log line says why the tag was served stale")
				}
			} else {
				assertOCIError(t, resp, tc.wantCode)
			}
			resp = do(t, http.MethodGet, m.URL+"/v2/org/app/manifests/cold", nil)
			if resp.StatusCode != tc.wantCold {
				t.Fatalf("cold tag: got %d, want %d: %s", resp.StatusCode, tc.wantCold, resp.body)
			}
			assertOCIError(t, resp, tc.wantCode)
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("cold tag: got Content-Type %q, want the mirror's own JSON error", ct)
			}

			// Once the upstream answers as a registry again, the tag is
			// what it was: trouble replaced and removed nothing.
			up.Intercept(nil)
			resp = do(t, http.MethodGet, m.URL+"/v2/org/app/manifests/1", nil)
			if tc.wantCache == "stale" {
				if got, c := resp.Header.Get("Docker-Content-Digest"), resp.Header.Get("X-Pullthrough-Cache"); resp.StatusCode != 200 || got != want.String() || c != "revalidated" {
					t.Errorf("after the trouble: got %d %s (cache %q), want 200 %s (revalidated)", resp.StatusCode, got, c, want)
				}
			}
		})
	}
}

// TestEveryAnswerForbidsScript: whatever a body holds, a browser neither
// sniffs it into a page nor runs script in it on the mirror's origin
// (issue 20: an upstream manifest answered as text/html was served so).
// Refused requests close their connection.
func TestEveryAnswerForbidsScript(t *testing.T) {
	reg := testenv.InProcessRegistry(t)
	up := testenv.NewUpstream(t, reg)
	img := testenv.SeedImage(t, reg, "org/app:1", 2<<10, 1)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	m := mirrorFor(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways, Access: proxy.AccessConfig{Hosts: []string{"localhost"}}}, proxy.UpstreamConfig{}, up)
	for _, tc := range []struct {
		name, path string
		header     http.Header
		want       int
		wantClose  bool
	}{
		{"base", "/v2/", nil, 200, false},
		{"manifest", "/v2/org/app/manifests/1", nil, 200, false},
		{"blob", "/v2/org/app/blobs/" + ld.String(), nil, 200, false},
		{"tags", "/v2/org/app/tags/list", nil, 200, false},
		{"error", "/v2/org/app/manifests/nope", nil, 404, false},
		{"refused browser request", "/v2/org/app/manifests/1", http.Header{"Sec-Fetch-Site": {"cross-site"}}, 403, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := do(t, http.MethodGet, m.URL+tc.path, tc.header)
			if resp.StatusCode != tc.want {
				t.Fatalf("got %d, want %d", resp.StatusCode, tc.want)
			}
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("got X-Content-Type-Options %q, want nosniff", got)
			}
			csp := resp.Header.Get("Content-Security-Policy")
			if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "sandbox") {
				t.Errorf("got Content-Security-Policy %q, want default-src 'none' and sandbox", csp)
			}
			if resp.Close != tc.wantClose {
				t.Errorf("got connection close %v, want %v", resp.Close, tc.wantClose)
			}
		})
	}
}

// internalService stands in for what only the mirror can reach: the
// instance metadata service, or any service on the mirror's own network.
// It listens on 127.0.0.1, and is reached as http://0.0.0.0:<port>: Linux
// connects 0.0.0.0 to the local host (the "0.0.0.0 day" bypass of SSRF
// checks that look at names or at 127.0.0.0/8 only). It counts requests
// and answers with something secret, shaped as a tag list so that a mirror
// passing tag lists through would hand it to the client.
func internalService(t *testing.T) (base string, hits func() int) {
	t.Helper()
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"name":"org/app","tags":["AKIAIOSFODNN7EXAMPLE"],"token":"secret"}`)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return "http://0.0.0.0:" + u.Port(), func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// TestRedirectsAimedInwardAreRefused: a hostile upstream (issue 20 class
// 2) answers with a redirect to the instance metadata service (IPv4
// 169.254.169.254 and IPv6 fd00:ec2::254, AWS EC2 user guide "Instance
// metadata service") or to an internal address, or names a token realm
// there. The upstream is on loopback, so loopback is allowed; nothing else
// non-public is. The mirror makes no connection there and answers 502.
func TestRedirectsAimedInwardAreRefused(t *testing.T) {
	internal, hits := internalService(t)
	reg := testenv.InProcessRegistry(t)
	img := testenv.SeedImage(t, reg, "org/app:1", 2<<10, 1)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	for _, tc := range []struct {
		name, path, location string
		realm                bool // the upstream names internal as its token realm instead
	}{
		{"tag list to an internal address", "/v2/org/app/tags/list", internal + "/latest/meta-data/iam/security-credentials/", false},
		{"manifest by tag to an internal address", "/v2/org/app/manifests/1", internal + "/v2/org/app/manifests/1", false},
		{"blob to an internal address", "/v2/org/app/blobs/" + ld.String(), internal + "/blob", false},
		{"tag list to the metadata service", "/v2/org/app/tags/list", "http://169.254.169.254/latest/meta-data/iam/security-credentials/", false},
		{"manifest to the IPv6 metadata service", "/v2/org/app/manifests/1", "http://[fd00:ec2::254]/latest/meta-data/", false},
		{"blob to the metadata service as IPv4-mapped IPv6", "/v2/org/app/blobs/" + ld.String(), "http://[::ffff:169.254.169.254]/latest/meta-data/", false},
		{"redirect to another scheme", "/v2/org/app/tags/list", "file:///etc/passwd", false},
		{"token realm at an internal address", "/v2/org/app/manifests/1", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := testenv.NewUpstream(t, reg)
			upCfg := proxy.UpstreamConfig{}
			if tc.realm {
				// An auth host is configured by name; where the name
				// resolves is not (here it is written as the address).
				up.RequireToken(internal+"/token", "", "")
				upCfg.AuthHosts = []string{strings.TrimPrefix(internal, "http://")}
			} else {
				up.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
					if r.URL.Path != tc.path {
						return false
					}
					http.Redirect(w, r, tc.location, http.StatusTemporaryRedirect)
					return true
				})
			}
			m := mirrorFor(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, upCfg, up)
			before := hits()
			resp := do(t, http.MethodGet, m.URL+tc.path, nil)
			if resp.StatusCode != http.StatusBadGateway {
				t.Errorf("got %d, want 502: %s", resp.StatusCode, resp.body)
			}
			if strings.Contains(string(resp.body), "AKIA") {
				t.Errorf("the internal service's answer reached the client: %s", resp.body)
			}
			if n := hits() - before; n != 0 {
				t.Errorf("got %d requests at the internal address, want 0", n)
			}
		})
	}
}

// TestInwardBlobURLsAreNotHandedOut: with the redirect-upstream policy the
// mirror sends clients to an upstream's signed blob URL; one aimed at an
// address the mirror would not connect to is not handed to clients either
// (nodes in the mirror's network would fetch their own metadata service as
// a layer). The mirror fills instead, under the dial policy.
func TestInwardBlobURLsAreNotHandedOut(t *testing.T) {
	internal, hits := internalService(t)
	reg := testenv.InProcessRegistry(t)
	img := testenv.SeedImage(t, reg, "org/app:1", 2<<10, 1)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	up := testenv.NewUpstream(t, reg)
	up.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if testenv.Kind(r.URL.Path) != "blob" {
			return false
		}
		http.Redirect(w, r, internal+"/signed/blob?X-Amz-Signature=x", http.StatusTemporaryRedirect)
		return true
	})
	m := mirrorFor(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways, LargeBlobPolicy: proxy.PolicyUpstream}, proxy.UpstreamConfig{}, up)
	req, _ := http.NewRequest(http.MethodGet, m.URL+"/v2/org/app/blobs/"+ld.String(), nil)
	resp, err := testenv.NoRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusBadGateway || loc != "" {
		t.Errorf("got %d to %q, want 502 and no Location", resp.StatusCode, loc)
	}
	if n := hits(); n != 0 {
		t.Errorf("got %d requests at the internal address, want 0", n)
	}
}

// TestEncodedBlobIsTheBytesSent: object stores and CDNs label stored
// .tar.gz layers with Content-Encoding: gzip (S3 object metadata set at
// upload; GCS "decompressive transcoding", cloud.google.com/storage/docs/
// transcoding) and send them so whatever the request asked. The mirror
// asks for identity and verifies what was sent: the layer's own bytes,
// which hash to its digest. A client that let its HTTP library inflate
// them would see a mismatch (and would inflate without bound).
func TestEncodedBlobIsTheBytesSent(t *testing.T) {
	reg := testenv.InProcessRegistry(t)
	up := testenv.NewUpstream(t, reg)
	img := testenv.SeedImage(t, reg, "org/app:1", 64<<10, 2)
	want, _ := img.Digest()
	var mu sync.Mutex
	encodings := map[string]int{}
	up.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		encodings[r.Header.Get("Accept-Encoding")]++
		mu.Unlock()
		if r.Method != http.MethodGet || testenv.Kind(r.URL.Path) != "blob" {
			return false
		}
		layers, _ := img.Layers()
		for _, l := range layers {
			d, _ := l.Digest()
			if strings.HasSuffix(r.URL.Path, "/"+d.String()) {
				rc, _ := l.Compressed()
				defer rc.Close()
				w.Header().Set("Content-Type", "application/octet-stream")
				w.Header().Set("Content-Encoding", "gzip")
				io.Copy(w, rc)
				return true
			}
		}
		return false
	})
	m := mirrorFor(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{}, up)
	if got, err := testenv.Pull(m.URL, "org/app:1"); err != nil || got != want {
		t.Fatalf("got %s, %v, want %s", got, err, want)
	}
	mu.Lock()
	defer mu.Unlock()
	for enc, n := range encodings {
		if enc != "identity" {
			t.Errorf("got %d upstream requests with Accept-Encoding %q, want every one identity", n, enc)
		}
	}
}
