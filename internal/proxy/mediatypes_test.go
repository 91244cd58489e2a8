package proxy

import (
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestDefaultPlatformChildPastOddFields: the list rewrite finds the
// linux/amd64 image of a list with an annotation image-spec cannot type.
func TestDefaultPlatformChildPastOddFields(t *testing.T) {
	a, b := digest.FromString("a"), digest.FromString("b")
	list := `{"schemaVersion":2,"manifests":[` +
		`{"digest":"A","size":"7","platform":{"os":"linux","architecture":"arm64"}},` +
		`{"digest":"B","annotations":{"n":1},"platform":{"os":"linux","architecture":"amd64","features":["sse4"]}}]}`
	list = strings.NewReplacer("A", a.String(), "B", b.String()).Replace(list)
	if got, ok := defaultPlatformChild([]byte(list)); !ok || got != b {
		t.Errorf("got %s %v, want %s true", got, ok, b)
	}
}
