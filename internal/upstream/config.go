package upstream

import (
	"cmp"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pullthrough/pullthrough/internal/dockerhub"
	"github.com/pullthrough/pullthrough/internal/field"
)

// Config describes one registry the mirror pulls from.
type Config struct {
	// Host is the registry's name as clients know it, e.g. docker.io. It
	// scopes tag records in the store.
	Host string
	// URL is the registry's base URL, e.g. https://registry-1.docker.io.
	URL string
	// Username and Password are optional credentials, sent only to the
	// upstream itself and to allowed token realms.
	Username, Password string
	// AuthHosts are extra hosts whose token realms are honoured (the
	// upstream's own host always is).
	AuthHosts []string
	// Token is an optional static bearer token sent to the upstream.
	Token string
	// Allow and Deny are repository globs ("library/*", "myorg/**"): "*"
	// matches within one path component, "**" across components. A
	// repository matching Deny, or not matching a non-empty Allow, is
	// refused without an upstream request.
	Allow, Deny []string
	// Transport is the round tripper for all upstream traffic; nil means a
	// dedicated transport with sane timeouts. A *http.Transport that dials
	// as the standard library does gets the dial policy (dial.go) on a
	// clone; one with its own dialer, or another RoundTripper, is trusted
	// to apply its own.
	Transport http.RoundTripper
	// Timeouts bound each attempt's phases; a zero field takes its
	// default. The binary leaves them zero (no variable sets them): they
	// are here for tests, which cannot wait for the defaults.
	Timeouts Timeouts
}

// Timeouts are the deadlines of one attempt of an upstream request.
type Timeouts struct {
	// Connect bounds getting a connection (DNS, TCP, TLS):
	// DefaultConnectTimeout.
	Connect time.Duration
	// FirstByte bounds the wait for the response header once connected:
	// DefaultFirstByteTimeout.
	FirstByte time.Duration
	// Body bounds the silence of a blob body mid-transfer:
	// IdleBodyTimeout.
	Body time.Duration
}

func (t Timeouts) withDefaults() Timeouts {
	t.Connect = cmp.Or(t.Connect, DefaultConnectTimeout)
	t.FirstByte = cmp.Or(t.FirstByte, DefaultFirstByteTimeout)
	t.Body = cmp.Or(t.Body, IdleBodyTimeout)
	return t
}

// ErrURLCredentials is the rule an UpstreamConfig.URL with user:password@
// breaks; the binary recognises it (errors.Is) to name the variables that
// take credentials instead.
var ErrURLCredentials = errors.New("the URL holds credentials (user:password@): give them as Username and Password")

// Validate reports every field of c that breaks a rule, as joined
// *field.Error values: the URL is an http or https base URL with a host and
// no path, query or credentials; Host (optional: the URL's host by
// default) and AuthHosts are host[:port] names; Username and Password come
// together. Credentials are never repeated in the errors.
func (c Config) Validate() error {
	var errs []error
	bad := func(name string, v any, format string, args ...any) {
		errs = append(errs, field.Errorf(name, v, format, args...))
	}
	base, err := url.Parse(strings.TrimRight(c.URL, "/"))
	switch {
	case err == nil && base.User != nil:
		errs = append(errs, &field.Error{Field: "URL", Err: ErrURLCredentials})
	case err != nil || base.Host == "" || (base.Scheme != "https" && base.Scheme != "http"):
		bad("URL", RedactURL(c.URL), "want a base URL such as %s, got %q", dockerhub.URL, RedactURL(c.URL))
	case base.Path != "" || base.RawQuery != "":
		bad("URL", RedactURL(c.URL), "want a base URL without a path or query, such as %s, got %q", dockerhub.URL, RedactURL(c.URL))
	case !validPort(base.Port()):
		// url.Parse checks only that a port is digits; every request
		// would fail to dial.
		bad("URL", RedactURL(c.URL), "want a base URL with a port from 1 to 65535, got %q", RedactURL(c.URL))
	}
	if c.Host != "" && !validHost(c.Host) {
		bad("Host", c.Host, "want a registry host such as ghcr.io or registry.example:5000, got %q", c.Host)
	}
	if (c.Username == "") != (c.Password == "") {
		bad("Username", nil, "want both a user name and a password, or neither")
	}
	for _, h := range c.AuthHosts {
		if !validHost(h) {
			bad("AuthHosts", h, "want host[:port] names, got %q", h)
		}
	}
	if t := c.Timeouts; t.Connect < 0 || t.FirstByte < 0 || t.Body < 0 {
		bad("Timeouts", nil, "want durations of zero (the default) or more")
	}
	return errors.Join(errs...)
}

// validPort reports whether a URL's port is absent or 1 to 65535.
func validPort(port string) bool {
	n, err := strconv.Atoi(port)
	return port == "" || err == nil && n >= 1 && n <= 65535
}

// validHost is the shape of a registry or token host name: non-empty, no
// path, user info or spaces.
func validHost(h string) bool {
	return h != "" && !strings.ContainsAny(h, "/@ \t")
}

// RedactURL drops the query and credentials of one configured URL for an
// error message or a log line; text that is not a URL is returned as is.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return raw
	}
	u.User, u.RawQuery = nil, ""
	return u.String()
}
