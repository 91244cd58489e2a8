package oci

import (
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestManifestRefsPastOddFields checks that ManifestRefs, which the links
// and the sweep's liveness depend on, reads the digests of a document whose
// other descriptor fields do not fit image-spec's types, as it did before
// it used them; and that a document that is not a JSON object has none.
func TestManifestRefsPastOddFields(t *testing.T) {
	a, b, c := digest.FromString("a"), digest.FromString("b"), digest.FromString("c")
	for _, tc := range []struct {
		name string
		doc  string // A, B and C stand for the digests a, b and c
		want []digest.Digest
	}{
		{"image", `{"schemaVersion":2,"config":{"digest":"A","size":1},"layers":[{"digest":"B","size":2}]}`, []digest.Digest{a, b}},
		{"size as a string", `{"config":{"digest":"A","size":"1"},"layers":[{"digest":"B","size":"2"}]}`, []digest.Digest{a, b}},
		{"annotation not a string", `{"config":{"digest":"A"},"layers":[{"digest":"B","annotations":{"n":1}}],"annotations":{"x":true}}`, []digest.Digest{a, b}},
		{"data not base64", `{"config":{"digest":"A","data":"%%%"},"layers":[{"digest":"B"}]}`, []digest.Digest{a, b}},
		{"index, platform not an object", `{"manifests":[{"digest":"A","platform":"linux/amd64"},{"digest":"B"}]}`, []digest.Digest{a, b}},
		{"schema 1", `{"schemaVersion":1,"fsLayers":[{"blobSum":"C"},{"blobSum":"A"}]}`, []digest.Digest{c, a}},
		{"invalid digest skipped", `{"config":{"digest":"sha256:nope"},"layers":[{"digest":"B"}]}`, []digest.Digest{b}},
		{"array", `[{"digest":"A"}]`, nil},
		{"not JSON", `{"config":`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.NewReplacer("A", a.String(), "B", b.String(), "C", c.String()).Replace(tc.doc)
			if got := ManifestRefs([]byte(doc)); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
