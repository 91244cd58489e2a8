package fill

import (
	"testing"

	"github.com/pullthrough/pullthrough/internal/depcheck"
)

// TestDependencies keeps the arrows between packages: the fill engine knows
// the cache, the upstream client and the vocabulary, never the serving side.
func TestDependencies(t *testing.T) {
	depcheck.AssertOnly(t,
		"github.com/pullthrough/pullthrough/internal/cache",
		"github.com/pullthrough/pullthrough/internal/oci",
		"github.com/pullthrough/pullthrough/internal/upstream",
		"github.com/pullthrough/pullthrough/internal/dockerhub",
		"github.com/pullthrough/pullthrough/internal/field",
		"github.com/opencontainers/go-digest",
		"github.com/opencontainers/image-spec/specs-go",
	)
}
