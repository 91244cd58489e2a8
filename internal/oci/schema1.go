package oci

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ManifestDigests lists the digests a manifest's bytes may be addressed
// by, the preferred first. For a signed Docker schema 1 manifest that is
// the hash of its payload without the signatures, which is what
// distribution (manifest/schema1/manifest.go: the digest of Canonical) and
// quay call its digest; the hash of the whole signed body comes second for
// registries that hash what they serve. For anything else it is the hash
// of the bytes.
func ManifestDigests(alg digest.Algorithm, mediaType string, data []byte) []digest.Digest {
	whole := alg.FromBytes(data)
	if !isSchema1(mediaType, data) {
		return []digest.Digest{whole}
	}
	payload, ok := schema1Payload(data)
	if !ok {
		return []digest.Digest{whole}
	}
	return []digest.Digest{alg.FromBytes(payload), whole}
}

// isSchema1 tells a schema 1 manifest by its media type, or by its
// schemaVersion where the registry sent a generic type (application/json
// is schema 1's historical type).
func isSchema1(mediaType string, data []byte) bool {
	switch mediaType {
	case MediaSchema1Signed, MediaSchema1:
		return true
	case MediaDockerManifest, MediaDockerList, ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex:
		return false
	}
	var probe specs.Versioned
	return json.Unmarshal(data, &probe) == nil && probe.SchemaVersion == 1
}

// schema1Payload undoes libtrust's "pretty signature" (docker/libtrust
// jsonsign.go, ParsePrettySignature): the signed payload is the body's
// first formatLength bytes followed by formatTail, both taken from each
// signature's protected header (base64url without padding), and every
// signature must agree on them. It reports false for a body without
// signatures or with a malformed signature block.
func schema1Payload(data []byte) ([]byte, bool) {
	var body struct {
		Signatures []struct {
			Protected string `json:"protected"`
		} `json:"signatures"`
	}
	if json.Unmarshal(data, &body) != nil || len(body.Signatures) == 0 {
		return nil, false
	}
	length, tail := 0, []byte(nil)
	for i, s := range body.Signatures {
		raw, err := joseDecode(s.Protected)
		if err != nil {
			return nil, false
		}
		var h struct {
			FormatLength *int    `json:"formatLength"`
			FormatTail   *string `json:"formatTail"`
		}
		if json.Unmarshal(raw, &h) != nil || h.FormatLength == nil || h.FormatTail == nil {
			return nil, false
		}
		t, err := joseDecode(*h.FormatTail)
		if err != nil {
			return nil, false
		}
		if i > 0 && (length != *h.FormatLength || !bytes.Equal(tail, t)) {
			return nil, false // conflicting format, as libtrust refuses
		}
		length, tail = *h.FormatLength, t
	}
	if length < 0 || length > len(data) {
		return nil, false
	}
	return append(bytes.Clone(data[:length]), tail...), true
}

// joseDecode is base64url with the padding JOSE leaves out.
func joseDecode(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
