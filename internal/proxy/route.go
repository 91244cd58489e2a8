package proxy

import (
	_ "crypto/sha256" // registers sha256 with go-digest
	_ "crypto/sha512" // registers sha512 with go-digest
	"fmt"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"github.com/pullthrough/pullthrough/internal/oci"
)

// maxPathLen bounds the request path before any parsing work. A repository
// name is at most 255 bytes and a digest about 140, so anything longer is
// not a registry request.
const maxPathLen = 1024

type routeKind int

const (
	routeBase routeKind = iota
	routeManifest
	routeBlob
	routeTags
	routeReferrers
)

func (k routeKind) String() string {
	switch k {
	case routeBase:
		return "base"
	case routeManifest:
		return "manifest"
	case routeBlob:
		return "blob"
	case routeTags:
		return "tags"
	case routeReferrers:
		return "referrers"
	}
	return "unknown"
}

// route is a parsed, validated /v2/ request path. Every field that ends up in
// a store key has been checked against the distribution grammar, so a route
// can never name a key outside its namespace.
type route struct {
	kind   routeKind
	name   string        // repository name, e.g. library/alpine
	tag    string        // manifests by tag only
	digest digest.Digest // manifests by digest, blobs, referrers
	up     *Upstream     // set by resolve
}

// parseRoute parses an escaped URL path. Repository names contain slashes,
// so the path is read from the right: the last one or two segments say what
// is asked for and everything between /v2/ and them is the name.
func parseRoute(escapedPath string) (route, error) {
	if len(escapedPath) > maxPathLen {
		return route{}, oci.ErrNameInvalid.With("request path too long", nil)
	}
	// Repository names, tags and digests have no character that needs
	// escaping, so any escape is either noise or an attempt to smuggle a
	// separator (%2F) past the parser.
	if strings.ContainsAny(escapedPath, "%\\") {
		return route{}, oci.ErrNameInvalid.With("escaped characters are not allowed in registry paths", nil)
	}
	if escapedPath == "/v2" || escapedPath == "/v2/" {
		return route{kind: routeBase}, nil
	}
	rest, ok := strings.CutPrefix(escapedPath, "/v2/")
	if !ok {
		return route{}, oci.ErrNotFound.With("not a registry API path", nil)
	}
	segs := strings.Split(rest, "/")
	n := len(segs)
	if n < 3 {
		return route{}, oci.ErrNotFound.With("not a registry API path", nil)
	}
	last, kindSeg := segs[n-1], segs[n-2]
	nameOf := func(drop int) string { return strings.Join(segs[:n-drop], "/") }

	var rt route
	switch {
	case kindSeg == "tags" && last == "list":
		rt = route{kind: routeTags, name: nameOf(2)}
	case kindSeg == "manifests":
		rt = route{kind: routeManifest, name: nameOf(2)}
		if strings.Contains(last, ":") {
			d, err := parseDigest(last)
			if err != nil {
				return route{}, err
			}
			rt.digest = d
		} else {
			if !anchoredTag(last) {
				return route{}, oci.ErrManifestInvalid.With(fmt.Sprintf("invalid tag %q", oci.Truncate(last)), nil)
			}
			rt.tag = last
		}
	case kindSeg == "blobs":
		d, err := parseDigest(last)
		if err != nil {
			return route{}, err
		}
		rt = route{kind: routeBlob, name: nameOf(2), digest: d}
	case kindSeg == "referrers":
		d, err := parseDigest(last)
		if err != nil {
			return route{}, err
		}
		rt = route{kind: routeReferrers, name: nameOf(2), digest: d}
	default:
		return route{}, oci.ErrNotFound.With("not a registry API path", nil)
	}
	if err := validName(rt.name); err != nil {
		return route{}, err
	}
	return rt, nil
}

// anchoredTag reports whether all of s is a tag (the exported regexp is
// unanchored).
func anchoredTag(s string) bool {
	return s != "" && reference.TagRegexp.FindString(s) == s
}

func validName(name string) error {
	if name == "" || len(name) > reference.NameTotalLengthMax {
		return oci.ErrNameInvalid.With("repository name must be 1 to 255 characters", nil)
	}
	// The grammar allows upper case in a leading domain component; a
	// mirror path never needs it and keys must not differ by case only.
	if reference.NameRegexp.FindString(name) != name || strings.ToLower(name) != name {
		return oci.ErrNameInvalid.With(fmt.Sprintf("invalid repository name %q", oci.Truncate(name)), nil)
	}
	return nil
}

func parseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", oci.ErrDigestInvalid.With(fmt.Sprintf("invalid digest %q", oci.Truncate(s)), err)
	}
	return d, nil
}
