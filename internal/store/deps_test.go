package store

import (
	"testing"

	"github.com/pullthrough/pullthrough/internal/depcheck"
)

// TestDependencies keeps the arrows between packages: the stores are the
// only AWS importers and know nothing of the mirror's other packages but
// the field errors their tuning reports.
func TestDependencies(t *testing.T) {
	depcheck.AssertOnly(t,
		"github.com/aws/aws-sdk-go-v2",
		"github.com/aws/smithy-go",
		"github.com/pullthrough/pullthrough/internal/field",
	)
}
