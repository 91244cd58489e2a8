package doctor

import (
	"net/http"
	"strings"
	"testing"
)

// The client rules as the clients' sources state them (see clients.go),
// over answers as net/http hands them to a Go client: a chunked answer has
// length -1 and no Content-Length header.
func TestClientRules(t *testing.T) {
	const dg = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	body := []byte(`{"schemaVersion":2}`)
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	full := hdr(hContentType, "application/vnd.oci.image.manifest.v1+json", hDigest, dg, hContentLength, "19")
	noLength := hdr(hContentType, "application/vnd.oci.image.manifest.v1+json", hDigest, dg)
	noDigest := hdr(hContentType, "application/vnd.oci.image.manifest.v1+json", hContentLength, "19")
	typeOnly := hdr(hContentType, "application/vnd.oci.image.manifest.v1+json")
	good := answer{status: 200, header: full, length: 19, body: body}
	chunked := answer{status: 200, header: noLength, length: -1, body: body}
	chunkedNoDigest := answer{status: 200, header: typeOnly, length: -1, body: body}

	for _, tc := range []struct {
		name                        string
		head, get                   answer
		dockerd, containerd, ggcrOK bool
		dockerdSays, containerdSays string
	}{
		{"every header", answer{status: 200, header: full, length: 19}, good, true, true, true, "Content-Length", "Content-Length"},
		{"function URL: digest without length", answer{status: 200, header: noLength, length: -1}, chunked, false, true, false, "lacks Content-Length", "falls back to GET"},
		{"no digest on HEAD, full GET", answer{status: 200, header: noDigest, length: 19}, good, true, true, false, "falls back to GET", "falls back to GET"},
		{"no digest on HEAD, chunked GET with digest", answer{status: 200, header: typeOnly, length: -1}, chunked, false, true, false, "no Content-Length (chunked)", "falls back"},
		{"neither header anywhere", answer{status: 200, header: typeOnly, length: -1}, chunkedNoDigest, true, true, false, "falls back to GET", "falls back"},
		{"HEAD refused with 405", answer{status: 405, header: http.Header{}, length: 0}, good, true, true, false, "HEAD answered 405", "HEAD answered 405"},
		{"tag unknown", answer{status: 404, header: http.Header{}, length: 0}, answer{status: 404, header: http.Header{}, body: []byte(`{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`)}, false, false, false, "404 MANIFEST_UNKNOWN", "404"},
		{"no Content-Type", answer{status: 200, header: hdr(hDigest, dg, hContentLength, "19"), length: 19}, good, false, true, false, "lacks Content-Type", "Content-Length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, why := dockerd(tc.head, tc.get)
			if ok != tc.dockerd || !strings.Contains(why, tc.dockerdSays) {
				t.Errorf("dockerd: got %v %q, want %v and %q", ok, why, tc.dockerd, tc.dockerdSays)
			}
			ok, why = containerd(tc.head, tc.get)
			if ok != tc.containerd || !strings.Contains(why, tc.containerdSays) {
				t.Errorf("containerd: got %v %q, want %v and %q", ok, why, tc.containerd, tc.containerdSays)
			}
			if ok, why = ggcr(tc.head); ok != tc.ggcrOK {
				t.Errorf("ggcr: got %v %q, want %v", ok, why, tc.ggcrOK)
			}
		})
	}
}
