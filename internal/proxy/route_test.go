package proxy

import (
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/pullthrough/pullthrough/internal/cache"
	"github.com/pullthrough/pullthrough/internal/oci"
)

func TestParseRoute(t *testing.T) {
	sha := "sha256:" + strings.Repeat("a", 64)
	sha512 := "sha512:" + strings.Repeat("b", 128)
	for _, tc := range []struct {
		path    string
		want    route
		wantErr *oci.Error
	}{
		{"/v2/", route{kind: routeBase}, nil},
		{"/v2", route{kind: routeBase}, nil},
		{"/v2/library/alpine/manifests/latest", route{kind: routeManifest, name: "library/alpine", tag: "latest"}, nil},
		{"/v2/alpine/manifests/3.20", route{kind: routeManifest, name: "alpine", tag: "3.20"}, nil},
		{"/v2/a/b/c/d/manifests/" + sha, route{kind: routeManifest, name: "a/b/c/d", digest: digestOf(sha)}, nil},
		{"/v2/ghcr.io/org/app/manifests/1.0", route{kind: routeManifest, name: "ghcr.io/org/app", tag: "1.0"}, nil},
		{"/v2/library/alpine/blobs/" + sha, route{kind: routeBlob, name: "library/alpine", digest: digestOf(sha)}, nil},
		{"/v2/library/alpine/blobs/" + sha512, route{kind: routeBlob, name: "library/alpine", digest: digestOf(sha512)}, nil},
		{"/v2/library/alpine/tags/list", route{kind: routeTags, name: "library/alpine"}, nil},
		{"/v2/library/alpine/referrers/" + sha, route{kind: routeReferrers, name: "library/alpine", digest: digestOf(sha)}, nil},
		// A repository may be named like a route keyword.
		{"/v2/manifests/manifests/latest", route{kind: routeManifest, name: "manifests", tag: "latest"}, nil},
		{"/v2/blobs/tags/list", route{kind: routeTags, name: "blobs"}, nil},

		{"/v2/manifests/latest", route{}, oci.ErrNotFound},
		{"/v2/library/alpine/blobs/uploads/", route{}, oci.ErrNotFound},
		{"/v2/library/alpine/blobs/uploads/abc", route{}, oci.ErrNotFound},
		{"/v2/../x/manifests/latest", route{}, oci.ErrNameInvalid},
		{"/v2/a/./b/manifests/latest", route{}, oci.ErrNameInvalid},
		{"/v2//a/manifests/latest", route{}, oci.ErrNameInvalid},
		{"/v2/a%2fb/manifests/latest", route{}, oci.ErrNameInvalid},
		{"/v2/a\\b/manifests/latest", route{}, oci.ErrNameInvalid},
		{"/v2/UPPER/manifests/latest", route{}, oci.ErrNameInvalid},
		{"/v2/a/manifests/.hidden", route{}, oci.ErrManifestInvalid},
		{"/v2/a/manifests/", route{}, oci.ErrManifestInvalid},
		{"/v2/a/blobs/sha256:" + strings.Repeat("A", 64), route{}, oci.ErrDigestInvalid},
		{"/v2/a/blobs/sha256:../../etc", route{}, oci.ErrNotFound},
		{"/v2/a/blobs/sha256:..", route{}, oci.ErrDigestInvalid},
		{"/v2/a/manifests/sha256:", route{}, oci.ErrDigestInvalid},
		{"/v3/a/manifests/latest", route{}, oci.ErrNotFound},
		{"/v2/" + strings.Repeat("a/", 600) + "manifests/x", route{}, oci.ErrNameInvalid},
	} {
		t.Run(tc.path[:min(len(tc.path), 60)], func(t *testing.T) {
			got, err := parseRoute(tc.path)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %v, want %s", err, tc.wantErr.Code)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v", err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// FuzzParseRoute checks that no path panics and that every accepted route
// yields store keys without traversal or empty segments.
func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{
		"/v2/", "/v2/library/alpine/manifests/latest", "/v2/a/blobs/sha256:" + strings.Repeat("0", 64),
		"/v2/a/b/tags/list", "/v2/../../manifests/x", "/v2/a%2Fb/manifests/x", "/v2/a/referrers/sha512:" + strings.Repeat("f", 128),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		rt, err := parseRoute(path)
		if err != nil {
			var e *oci.Error
			if !errors.As(err, &e) || e.Status < 400 || e.Status >= 500 {
				t.Fatalf("%q: error %v is not a 4xx OCI error", path, err)
			}
			return
		}
		var keys []string
		switch rt.kind {
		case routeManifest:
			if rt.tag != "" {
				keys = append(keys, cache.TagKey("docker.io", rt.name, rt.tag))
			} else {
				keys = append(keys, cache.ManifestKey(rt.digest))
			}
		case routeBlob:
			keys = append(keys, cache.BlobKey(rt.digest))
		}
		for _, k := range keys {
			for _, seg := range strings.Split(k, "/") {
				if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, "\\%\x00") {
					t.Fatalf("%q: unsafe key %q", path, k)
				}
			}
		}
	})
}

func digestOf(s string) digest.Digest { return digest.Digest(s) }

// FuzzImageReference checks the image references the warm endpoint takes:
// never a panic, and an accepted one names a configured registry and a
// valid repository.
func FuzzImageReference(f *testing.F) {
	for _, s := range []string{"alpine", "alpine:3.20", "docker.io/library/alpine@sha256:" + strings.Repeat("a", 64), "ghcr.io/org/app:1", "evil.example/x", "../x", "UPPER/x", ""} {
		f.Add(s)
	}
	up, err := NewUpstream(UpstreamConfig{Host: DockerHubHost, URL: DockerHubURL})
	if err != nil {
		f.Fatal(err)
	}
	p, err := New(Config{}, nil, []*Upstream{up}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, image string) {
		rt, err := p.warmRoute(image)
		if err != nil {
			return
		}
		if rt.up != up || validName(rt.name) != nil || (rt.tag == "") == (rt.digest == "") {
			t.Fatalf("%q: accepted as %+v", image, rt)
		}
	})
}
