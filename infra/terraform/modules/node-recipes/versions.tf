terraform {
  # No provider: the recipes are pure functions of the mirror URL and the
  # upstreams, so they can be rendered (and tested) without AWS.
  required_version = ">= 1.9"
}
