package proxy

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/pullthrough/pullthrough/internal/field"
)

// Bounds of Config fields that Validate enforces.
const (
	// MinPresignTTL and MaxPresignTTL bound PresignTTL; SigV4 presigned
	// URLs live at most 7 days.
	MinPresignTTL = time.Second
	MaxPresignTTL = 7 * 24 * time.Hour
	// MinFillTimeout is the shortest FillTimeout.
	MinFillTimeout = time.Second
	// MaxFillParts bounds FillParts: ranged GETs of one fill at once.
	MaxFillParts = 16
	// MinFillPartSize and MaxFillPartSize bound FillPartSize: tiny parts
	// multiply upstream requests, huge ones the memory a fill holds.
	MinFillPartSize = 1 << 20
	MaxFillPartSize = 256 << 20
	// MaxMaxFills bounds MaxFills.
	MaxMaxFills = 1024
)

// WithDefaults returns c with every zero field that means a default set
// to it (each field's comment says which do), and negative durations that
// mean "none" set to zero. New applies it before Validate.
func (c Config) WithDefaults() Config {
	orDefault(&c.PresignTTL, DefaultPresignTTL)
	orDefault(&c.FillTimeout, DefaultFillTimeout)
	orDefault(&c.LeaseTTL, DefaultLeaseTTL)
	orDefault(&c.FillWait, DefaultFillWait)
	orDefault(&c.LargeBlobSize, DefaultLargeBlobSize)
	orDefault(&c.FillParts, DefaultFillParts)
	orDefault(&c.FillPartSize, DefaultFillPartSize)
	orDefault(&c.MaxFills, DefaultMaxFills)
	orDefault(&c.MaxManifestSize, DefaultMaxManifestSize)
	if c.LargeBlobPolicy == "" {
		c.LargeBlobPolicy = PolicyAuto
	}
	if c.ManifestTTL == 0 {
		c.ManifestTTL = DefaultManifestTTL // negative is RevalidateAlways
	}
	if c.DeniedGrace < 0 {
		c.DeniedGrace = 0
	}
	return c
}

// orDefault sets *v to def when it is zero or less.
func orDefault[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Validate reports every field of c that breaks a rule, as *field.Error
// values joined with errors.Join (nil when c is valid). It checks the values
// as they are: a zero that a field's comment says means a default is an
// error here, so apply WithDefaults first, as New does. This is the one
// place these rules live; the binary's parser only turns strings into
// values and names the variable of each field error.
func (c Config) Validate() error {
	var errs []error
	bad := func(name string, v any, format string, args ...any) {
		errs = append(errs, field.Errorf(name, v, format, args...))
	}
	if c.PresignTTL < MinPresignTTL || c.PresignTTL > MaxPresignTTL {
		bad("PresignTTL", c.PresignTTL, "want between %s and %s, got %s", field.Duration(MinPresignTTL), field.Duration(MaxPresignTTL), field.Duration(c.PresignTTL))
	}
	if c.FillTimeout < MinFillTimeout {
		bad("FillTimeout", c.FillTimeout, "want at least %s, got %s", field.Duration(MinFillTimeout), field.Duration(c.FillTimeout))
	}
	if c.FillWait <= 0 {
		// Zero is not "do not wait": WithDefaults reads it as
		// DefaultFillWait, so a configured 0s would silently become 4m.
		bad("FillWait", c.FillWait, "want more than 0s, got %s", field.Duration(c.FillWait))
	}
	if c.LeaseTTL < MinLeaseTTL {
		// Renewal ticks every third of it; a tiny TTL would spin (or, under
		// 3ns, make time.NewTicker panic).
		bad("LeaseTTL", c.LeaseTTL, "want at least %s, got %s", field.Duration(MinLeaseTTL), field.Duration(c.LeaseTTL))
	}
	switch c.LargeBlobPolicy {
	case PolicyWait, PolicyUpstream, PolicyAuto:
	default:
		bad("LargeBlobPolicy", c.LargeBlobPolicy, "want %s, %s or %s, got %q", PolicyWait, PolicyUpstream, PolicyAuto, c.LargeBlobPolicy)
	}
	if c.FillParts < 1 || c.FillParts > MaxFillParts {
		bad("FillParts", c.FillParts, "want 1 to %d, got %d", MaxFillParts, c.FillParts)
	}
	if c.FillPartSize < MinFillPartSize || c.FillPartSize > MaxFillPartSize {
		bad("FillPartSize", c.FillPartSize, "want %s to %s, got %s", field.Size(MinFillPartSize), field.Size(MaxFillPartSize), field.Size(c.FillPartSize))
	}
	if c.MaxFills < 1 || c.MaxFills > MaxMaxFills {
		bad("MaxFills", c.MaxFills, "want 1 to %d, got %d", MaxMaxFills, c.MaxFills)
	}
	if c.SpoolDir != "" {
		// Checked here, not at the first fill: a spool that cannot be
		// created turns every fill into one clients wait for whole.
		if fi, err := os.Stat(c.SpoolDir); err != nil || !fi.IsDir() {
			bad("SpoolDir", c.SpoolDir, "want an existing directory, got %q", c.SpoolDir)
		}
	}
	errs = append(errs, field.Nest("Access", c.Access.Validate()))
	return errors.Join(errs...)
}

// Validate reports every entry of c that breaks a rule, as joined
// *field.Error values. An empty credential is refused, not skipped:
// skipping would leave a mirror open that its operator configured as
// protected. Secret values are never repeated in the errors.
func (c AccessConfig) Validate() error {
	var errs []error
	for i, t := range c.Tokens {
		if strings.TrimSpace(t) == "" {
			errs = append(errs, field.Errorf("Tokens", nil, "token %d is empty", i+1))
		}
	}
	for u, p := range c.Users {
		// Basic auth splits user:password at the first colon (RFC 7617), so
		// a name with one could never log in.
		if u == "" || p == "" || strings.Contains(u, ":") {
			errs = append(errs, field.Errorf("Users", nil, "a user has an empty or invalid name (with ':') or an empty password"))
			break
		}
	}
	for _, s := range c.CIDRs {
		if _, err := parseCIDR(s); err != nil {
			errs = append(errs, field.Errorf("CIDRs", s, "%q is not a CIDR or address", s))
		}
	}
	return errors.Join(errs...)
}

// parseCIDR reads a network (10.0.0.0/8) or a single address (192.0.2.7,
// as a /32 or /128); blanks give an invalid prefix and no error.
func parseCIDR(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Prefix{}, nil
	}
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		addr, aerr := netip.ParseAddr(s)
		if aerr != nil {
			return netip.Prefix{}, fmt.Errorf("bad CIDR %q", s)
		}
		pfx = netip.PrefixFrom(addr, addr.BitLen())
	}
	return pfx.Masked(), nil
}

// ValidateUpstreamHosts checks a set of upstream hosts (in order) and the
// Config.DefaultUpstream that names one of them: no host twice
// (case-insensitively), and the default, when set, among them. Field
// errors name "Upstreams[i].Host" and "DefaultUpstream".
func ValidateUpstreamHosts(defaultUpstream string, hosts []string) error {
	var errs []error
	seen := map[string]bool{}
	for i, h := range hosts {
		h = strings.ToLower(h)
		if seen[h] {
			errs = append(errs, field.Errorf(fmt.Sprintf("Upstreams[%d].Host", i), h, "registry host %q is configured twice", h))
		}
		seen[h] = true
	}
	if d := defaultUpstream; d != "" && !seen[strings.ToLower(d)] {
		errs = append(errs, field.Errorf("DefaultUpstream", d, "%q is not one of the configured upstreams", d))
	}
	return errors.Join(errs...)
}
