package proxy

import (
	"net/http"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/pullthrough/pullthrough/internal/oci"
)

// acceptList is a client's Accept header reduced to media types.
type acceptList struct {
	any   bool
	types map[string]bool
}

func parseAccept(h http.Header) acceptList {
	a := acceptList{types: map[string]bool{}}
	for _, v := range h.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			mt = strings.ToLower(strings.TrimSpace(mt))
			switch mt {
			case "":
			case "*/*", "application/*":
				a.any = true
			default:
				a.types[mt] = true
			}
		}
	}
	if len(a.types) == 0 {
		a.any = true // no Accept header: the client takes what it gets
	}
	return a
}

var fullAccept = acceptList{any: true}

func (a acceptList) allows(mediaType string) bool {
	return a.any || a.types[mediaType]
}

// refuses reports whether a registry withholds a manifest of this type
// from the client. distribution (registry/handlers/manifests.go,
// GetManifest) answers 404 MANIFEST_UNKNOWN for an OCI manifest the client
// did not list, and sends Docker types whatever the Accept header says (a
// Docker list asked for by tag is the exception, see listRewritten).
// Docker Hub answers 404 for an OCI index the client did not list, too; so
// does distribution's handler by intent, though v3.1.2 misses the check
// (its index type is not the manifest-list type it tests for) and serves
// the index. The mirror answers as Docker Hub does.
func (a acceptList) refuses(mediaType string) bool {
	return !a.allows(mediaType) && (mediaType == ocispec.MediaTypeImageManifest || mediaType == ocispec.MediaTypeImageIndex)
}

// listRewritten reports whether a registry answers this client's request
// for a tag that is a Docker manifest list with one of the list's images
// instead (distribution's GetManifest: the client did not list the
// manifest-list type).
func (a acceptList) listRewritten(mediaType string) bool {
	return mediaType == oci.MediaDockerList && !a.allows(oci.MediaDockerList)
}

// Default platform of the list rewrite: distribution's defaultOS and
// defaultArch in registry/handlers/manifests.go.
const (
	defaultOS   = "linux"
	defaultArch = "amd64"
)

// defaultPlatformChild returns the digest of the first linux/amd64 image of
// a manifest list, matching OS and architecture only (variant and features
// are ignored), as distribution picks it.
func defaultPlatformChild(list []byte) (digest.Digest, bool) {
	var l ocispec.Index
	if oci.DecodeSpec(list, &l) != nil {
		return "", false
	}
	for _, m := range l.Manifests {
		if m.Platform != nil && m.Platform.OS == defaultOS && m.Platform.Architecture == defaultArch {
			return m.Digest, m.Digest.Validate() == nil
		}
	}
	return "", false
}
