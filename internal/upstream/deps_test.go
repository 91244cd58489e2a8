package upstream

import (
	"testing"

	"github.com/pullthrough/pullthrough/internal/depcheck"
)

// TestDependencies keeps the arrows between packages: the registry client
// knows the OCI vocabulary, not the cache, the fills or the serving side.
func TestDependencies(t *testing.T) {
	depcheck.AssertOnly(t,
		"github.com/pullthrough/pullthrough/internal/oci",
		"github.com/pullthrough/pullthrough/internal/dockerhub",
		"github.com/pullthrough/pullthrough/internal/field",
		"github.com/opencontainers/go-digest",
		"github.com/opencontainers/image-spec/specs-go",
	)
}
