package cache

import (
	"testing"

	"github.com/pullthrough/pullthrough/internal/depcheck"
)

// TestDependencies keeps the arrows between packages: the cache knows the
// store and the OCI vocabulary, not the upstream, the fills or HTTP serving.
func TestDependencies(t *testing.T) {
	depcheck.AssertOnly(t,
		"github.com/pullthrough/pullthrough/internal/oci",
		"github.com/opencontainers/go-digest",
		"github.com/opencontainers/image-spec/specs-go",
	)
}
