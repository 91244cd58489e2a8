package proxy

import (
	"testing"

	"github.com/pullthrough/pullthrough/internal/depcheck"
)

// TestDependencies keeps the arrows between packages: the serving side sits
// above every other package and imports no AWS package (it is the portable
// core).
func TestDependencies(t *testing.T) {
	depcheck.AssertOnly(t,
		"github.com/pullthrough/pullthrough/internal/cache",
		"github.com/pullthrough/pullthrough/internal/fill",
		"github.com/pullthrough/pullthrough/internal/oci",
		"github.com/pullthrough/pullthrough/internal/sweep",
		"github.com/pullthrough/pullthrough/internal/upstream",
		"github.com/pullthrough/pullthrough/internal/dockerhub",
		"github.com/pullthrough/pullthrough/internal/field",
		"github.com/opencontainers/go-digest",
		"github.com/opencontainers/image-spec/specs-go",
		"github.com/distribution/reference",
	)
}
