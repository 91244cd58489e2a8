package oci

import (
	"encoding/base64"
	"encoding/json"
	"errors"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker's manifest media types. The OCI ones come from image-spec
// (ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest); these are
// not in it. They are defined by Docker's "Image Manifest Version 2,
// Schema 2" spec (distribution/distribution
// docs/content/spec/manifest-v2-2.md, "Media Types") and, for schema 1,
// docs/content/spec/deprecated-schema-v1.md. The mirror alone uses them:
// doctor and testenv share no code with it, and take Docker's types from
// go-containerregistry's pkg/v1/types.
const (
	MediaDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaSchema1Signed  = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	MediaSchema1        = "application/vnd.docker.distribution.manifest.v1+json"
)

// DecodeSpec reads a manifest or index from the upstream into image-spec
// structs (ocispec.Index, ocispec.Manifest, ocispec.Descriptor). Those type
// every descriptor field (a size is an int64, annotations are strings, data
// is base64) while the mirror reads only digests, media types and
// platforms; a field of the wrong type is left zero instead of failing the
// whole document, so that one odd annotation does not hide a manifest's
// layers from the links and the sweep. json.Unmarshal fills every other
// field before it reports such an error. A document that is not a JSON
// object is still an error.
func DecodeSpec(data []byte, v any) error {
	err := json.Unmarshal(data, v)
	var typeErr *json.UnmarshalTypeError
	var b64Err base64.CorruptInputError
	if errors.As(err, &typeErr) && typeErr.Field != "" || errors.As(err, &b64Err) {
		return nil
	}
	return err
}

// IsManifestType reports whether a media type is one a registry serves a
// manifest as: an OCI image manifest or index (image-spec), a Docker schema
// 2 manifest or manifest list, or a Docker schema 1 manifest, signed or
// not. Nothing else is stored or served as a manifest: a text/html answer
// served with its type would be a page on the mirror's origin.
func IsManifestType(mediaType string) bool {
	switch mediaType {
	case ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex,
		MediaDockerManifest, MediaDockerList, MediaSchema1Signed, MediaSchema1:
		return true
	}
	return false
}

// IsIndex reports whether a media type is an index: an OCI image index or
// a Docker manifest list.
func IsIndex(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageIndex || mediaType == MediaDockerList
}

// ManifestRefs lists the digests a manifest references: an image's config
// and layers, an index's manifests, a schema 1 manifest's fsLayers. A
// subject is not included: the upstream does not require it to exist.
// Invalid digests are skipped.
func ManifestRefs(data []byte) []digest.Digest {
	var m struct {
		ocispec.Manifest                      // an image: config and layers
		Manifests        []ocispec.Descriptor `json:"manifests"` // an index
		// Docker schema 1 (distribution docs/content/spec/deprecated-schema-v1.md)
		// lists its layers as fsLayers[].blobSum, which image-spec has no type for.
		FSLayers []struct {
			BlobSum digest.Digest `json:"blobSum"`
		} `json:"fsLayers"`
	}
	if DecodeSpec(data, &m) != nil {
		return nil
	}
	all := []digest.Digest{m.Config.Digest}
	for _, d := range append(m.Layers, m.Manifests...) {
		all = append(all, d.Digest)
	}
	for _, l := range m.FSLayers {
		all = append(all, l.BlobSum)
	}
	var out []digest.Digest
	for _, d := range all {
		if d.Validate() == nil {
			out = append(out, d)
		}
	}
	return out
}

// ReferrersIndex is the image index the referrers API answers (distribution
// spec, "Listing Referrers"). It is not ocispec.Index: its descriptors stay
// raw so that each reaches the client byte for byte, with any field
// image-spec does not know.
type ReferrersIndex struct {
	specs.Versioned
	MediaType string            `json:"mediaType"`
	Manifests []json.RawMessage `json:"manifests"`
}

// Truncate keeps hostile input out of error messages and logs at a sane
// size: at most 80 bytes and an ellipsis.
func Truncate(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
