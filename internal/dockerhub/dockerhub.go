// Package dockerhub names Docker Hub the way clients do, in one place: the
// registry host Docker and containerd use in image names and ?ns=
// (docker.io), the API endpoint behind it, and the other names the same
// registry goes by. The mirror (routing, upstream defaults, configuration),
// `pullthrough doctor` and the Terraform module (a test keeps main.tf equal)
// all read it from here.
package dockerhub

import "strings"

const (
	// Host is Docker Hub's registry name in image references and in
	// containerd's ?ns= (containerd's docker.io hosts.toml default).
	Host = "docker.io"
	// URL is the registry API endpoint Docker's daemon uses for Host
	// (moby registry/config.go, DefaultV2Registry).
	URL = "https://registry-1.docker.io"
	// AuthHost serves Docker Hub's bearer tokens
	// (https://docs.docker.com/reference/api/registry/auth/).
	AuthHost = "auth.docker.io"
)

// aliases are other names of Host: the API endpoint, the V1 index name
// Docker still sends as ?ns= in some versions, and the web/API name older
// clients used.
var aliases = []string{"registry-1.docker.io", "index.docker.io", "registry.hub.docker.com"}

// Canonical returns Host for any of Docker Hub's names, and host
// lower-cased otherwise.
func Canonical(host string) string {
	host = strings.ToLower(host)
	for _, a := range aliases {
		if host == a {
			return Host
		}
	}
	return host
}

// Is reports whether host is one of Docker Hub's names.
func Is(host string) bool { return Canonical(host) == Host }
