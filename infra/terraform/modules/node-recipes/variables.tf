variable "mirror_url" {
  description = "Base URL of the mirror, scheme included, no trailing slash (the root module's mirror_url output)."
  type        = string

  validation {
    condition     = can(regex("^https?://[^/?#\\s\"]+$", var.mirror_url))
    error_message = "mirror_url must be http(s)://host[:port] with no path, query or trailing slash."
  }
}

variable "upstreams" {
  description = "Registries the mirror serves, keyed by the host clients name in image references (docker.io, ghcr.io, ...), each with the URL of the registry itself, which nodes fall back to when the mirror fails."
  type        = map(string)

  validation {
    condition     = length(var.upstreams) > 0 && alltrue([for h, u in var.upstreams : can(regex("^[a-z0-9.-]+(:[0-9]+)?$", h)) && can(regex("^https?://[^/?#\\s\"]+/?$", u))])
    error_message = "upstreams must map at least one registry host (lower case, optional port) to an http(s) URL without a path."
  }
}
