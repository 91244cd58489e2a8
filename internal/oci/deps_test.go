package oci

import (
	"testing"

	"github.com/pullthrough/pullthrough/internal/depcheck"
)

// TestDependencies keeps the arrows between packages: the shared vocabulary
// imports nothing of ours.
func TestDependencies(t *testing.T) {
	depcheck.AssertOnly(t,
		"github.com/opencontainers/go-digest",
		"github.com/opencontainers/image-spec/specs-go",
	)
}
