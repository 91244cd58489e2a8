package proxy

import (
	"encoding/base64"
	"encoding/json"
	"errors"
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
	mediaDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaSchema1Signed  = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	mediaSchema1        = "application/vnd.docker.distribution.manifest.v1+json"
)

// decodeSpec reads a manifest or index from the upstream into image-spec
// structs (ocispec.Index, ocispec.Manifest, ocispec.Descriptor). Those type
// every descriptor field (a size is an int64, annotations are strings, data
// is base64) while the mirror reads only digests, media types and
// platforms; a field of the wrong type is left zero instead of failing the
// whole document, so that one odd annotation does not hide a manifest's
// layers from the links and the sweep. json.Unmarshal fills every other
// field before it reports such an error. A document that is not a JSON
// object is still an error.
func decodeSpec(data []byte, v any) error {
	err := json.Unmarshal(data, v)
	var typeErr *json.UnmarshalTypeError
	var b64Err base64.CorruptInputError
	if errors.As(err, &typeErr) && typeErr.Field != "" || errors.As(err, &b64Err) {
		return nil
	}
	return err
}
