package proxy

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/pullthrough/pullthrough/internal/dockerhub"
	"github.com/pullthrough/pullthrough/internal/oci"
	"github.com/pullthrough/pullthrough/internal/upstream"
)

// The upstream registry client is package upstream's; these names keep the
// proxy's API whole for the binary and its tests.
type (
	// UpstreamConfig describes one registry the mirror pulls from.
	UpstreamConfig = upstream.Config
	// Upstream is the client of one upstream registry.
	Upstream = upstream.Client
)

// NewUpstream validates cfg (UpstreamConfig.Validate) and builds the
// client (upstream.New).
func NewUpstream(cfg UpstreamConfig) (*Upstream, error) { return upstream.New(cfg) }

// ErrURLCredentials is the rule an UpstreamConfig.URL with user:password@
// breaks (upstream.ErrURLCredentials).
var ErrURLCredentials = upstream.ErrURLCredentials

// DockerHubHost and DockerHubURL name the default upstream (see package
// dockerhub, which owns Docker Hub's names).
const (
	DockerHubHost = dockerhub.Host
	DockerHubURL  = dockerhub.URL
)

// fromUpstream turns an upstream client's error into the error the client
// sees: the edge between the registry client's vocabulary and the OCI
// one. notFound is the answer to the upstream's 404, 410 or 451 for what
// was asked (BLOB_UNKNOWN, MANIFEST_UNKNOWN, NAME_UNKNOWN). The upstream's
// own auth errors are never passed through: the client did not talk to the
// upstream and cannot fix them. An answer that is not the registry's
// (upstream.ErrNotRegistry) is a 502, so that clients fall back to their
// next endpoint, never a DENIED the registry did not say. An error that is already an OCI error (a
// fill's own) is returned as it is; nil stays nil.
func fromUpstream(err error, notFound *oci.Error) error {
	var oe *oci.Error
	var se *upstream.StatusError
	switch {
	case err == nil || errors.As(err, &oe):
		return err
	case errors.Is(err, upstream.ErrHostDown):
		return oci.ErrUnavailable.With("upstream registry is failing (it hung or refused connections moments ago) and there is no cached copy", err)
	case errors.Is(err, upstream.ErrBackingOff):
		return oci.ErrTooManyRequests.With("upstream asked the mirror to back off and there is no cached copy", err)
	case errors.Is(err, upstream.ErrBadContent):
		return oci.ErrUpstreamBadBytes.With("", err)
	case errors.Is(err, upstream.ErrNotRegistry):
		return oci.ErrUpstreamNotRegistry.With("", err)
	case errors.Is(err, upstream.ErrForbiddenAddress):
		return oci.ErrUpstreamNotRegistry.With("upstream sent the mirror to an address it does not reach; nothing was fetched", err)
	case errors.Is(err, upstream.ErrUnusable):
		return oci.ErrUnavailable.With("upstream registry sent an unusable answer", err)
	case !errors.As(err, &se):
		return oci.ErrUnavailable.With("upstream registry unreachable", err)
	}
	switch se.Status {
	case http.StatusNotFound:
		return notFound.With("", err)
	case http.StatusGone, http.StatusUnavailableForLegalReasons:
		return notFound.With(fmt.Sprintf("upstream answered %d %s", se.Status, http.StatusText(se.Status)), err)
	case http.StatusUnauthorized, http.StatusForbidden:
		return oci.ErrDenied.With("upstream denied access: the repository does not exist or needs credentials the mirror does not have", err)
	case http.StatusTooManyRequests:
		return oci.ErrTooManyRequests.With("upstream rate limit reached and the mirror has no cached copy", err).After(se.RetryAfter)
	default:
		return oci.ErrUnavailable.With("upstream registry unavailable", err)
	}
}
