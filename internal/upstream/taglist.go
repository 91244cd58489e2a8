package upstream

import (
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/pullthrough/pullthrough/internal/oci"
)

// tagPattern is a tag as the distribution spec defines it
// ("[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}", spec.md "Pulling manifests").
var tagPattern = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

// tagList is the tag list a registry answers (spec.md, "Listing Tags").
type tagList struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

// registryTagList reads an upstream's tag list body as registry JSON and
// encodes it again, so that only a name and tags reach the client: never
// an upstream's bytes passed through (an HTML page, a body fetched from
// wherever a redirect pointed, fields the client did not ask for). A body
// that is not a tag list, or names a tag no registry could hold, is
// ErrNotRegistry.
func registryTagList(body []byte) ([]byte, error) {
	var tl tagList
	if err := json.Unmarshal(body, &tl); err != nil {
		return nil, fmt.Errorf("tag list: %w: %w", ErrNotRegistry, err)
	}
	if tl.Tags == nil {
		tl.Tags = []string{}
	}
	for _, t := range tl.Tags {
		if !tagPattern.MatchString(t) {
			return nil, fmt.Errorf("tag list: tag %q: %w", oci.Truncate(t), ErrNotRegistry)
		}
	}
	return json.Marshal(tl)
}
