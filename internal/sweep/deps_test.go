package sweep

import (
	"testing"

	"github.com/pullthrough/pullthrough/internal/depcheck"
)

// TestDependencies keeps the arrows between packages: the sweep knows the
// cache's records, nothing of upstreams, fills or serving.
func TestDependencies(t *testing.T) {
	depcheck.AssertOnly(t,
		"github.com/pullthrough/pullthrough/internal/cache",
		"github.com/pullthrough/pullthrough/internal/oci",
		"github.com/pullthrough/pullthrough/internal/field",
		"github.com/opencontainers/go-digest",
		"github.com/opencontainers/image-spec/specs-go",
	)
}
