package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrForbiddenAddress: a connection, redirect or token realm would reach
// an address the upstream may not send the mirror to (see dialPolicy).
var ErrForbiddenAddress = errors.New("upstream would send the mirror to an address it does not reach")

// addrClass is the kind of network an address is on, as far as the dial
// policy cares.
type addrClass uint8

const (
	classPublic    addrClass = iota
	classLoopback            // 127.0.0.0/8, ::1
	classLinkLocal           // 169.254.0.0/16 (instance metadata at .169.254), fe80::/10, AWS's fd00:ec2::/32
	classPrivate             // RFC 1918, RFC 6598 shared (100.64.0.0/10), fc00::/7
	classOther               // unspecified, multicast, documentation, benchmarking, reserved
)

func (c addrClass) String() string {
	return [...]string{"public", "loopback", "link-local", "private", "non-public"}[c]
}

var (
	// AWS puts the instance metadata service, DNS and time sync of a Nitro
	// instance at fd00:ec2::254, ::253 and ::123: in fc00::/7 by prefix,
	// link-local in what they reach (EC2 user guide, "Instance metadata
	// service": "IPv6 address fd00:ec2::254").
	awsInstanceServices = netip.MustParsePrefix("fd00:ec2::/32")
	nat64               = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052: an IPv4 address behind a translator
	sharedSpace         = netip.MustParsePrefix("100.64.0.0/10")
	otherPrefixes       = []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/8"),
		netip.MustParsePrefix("192.0.0.0/24"),
		netip.MustParsePrefix("192.0.2.0/24"),
		netip.MustParsePrefix("198.18.0.0/15"),
		netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("203.0.113.0/24"),
		netip.MustParsePrefix("240.0.0.0/4"), // with 255.255.255.255
		netip.MustParsePrefix("::/96"),       // IPv4-compatible, deprecated
		netip.MustParsePrefix("100::/64"),
		netip.MustParsePrefix("2001:db8::/32"),
	}
)

// classify says which network an address is on. IPv4 addresses mapped
// into IPv6 (::ffff:a.b.c.d) or behind a NAT64 prefix count as the IPv4
// address they reach.
func classify(a netip.Addr) addrClass {
	a = a.Unmap()
	if a.Is6() && nat64.Contains(a) {
		b := a.As16()
		a = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	switch {
	case !a.IsValid():
		return classOther
	case a.IsLoopback():
		return classLoopback
	case a.IsLinkLocalUnicast() || awsInstanceServices.Contains(a):
		return classLinkLocal
	case a.IsPrivate() || sharedSpace.Contains(a):
		return classPrivate
	case a.IsUnspecified() || a.IsMulticast() || a.IsInterfaceLocalMulticast() || a.IsLinkLocalMulticast():
		return classOther
	}
	for _, p := range otherPrefixes {
		if p.Contains(a) {
			return classOther
		}
	}
	return classPublic
}

// dialPolicy decides which addresses the client may connect to: public
// ones, and the one non-public kind the upstream itself is on. An upstream
// is "on" a kind of network in one of two ways:
//
//   - configured by address (https://10.0.0.5:5000, http://127.0.0.1:5000,
//     http://[fd12::1]): that address's kind, known at start;
//   - configured by name: the kind of the address the name resolves to at
//     the mirror's first connection to that host (per process, so per Lambda
//     instance), and only public, private or loopback. From then on the
//     kind is fixed: a name that later resolves elsewhere (DNS rebinding,
//     or an upstream's DNS turned hostile) reaches public addresses and
//     that kind only, its own host included. An upstream whose name
//     resolves to a link-local address (the instance metadata service) is
//     refused; configure it by address if that is really meant.
//
// Every connection is checked where it is made, by the dialer's Control
// hook, on the address actually connected to: a name checked before the
// dial could resolve differently for the dial itself. Redirect targets
// and token realms go through the same dialer. Connections to a configured
// HTTP proxy (HTTP_PROXY, HTTPS_PROXY) are the operator's and not
// checked; behind such a proxy the proxy connects to the targets, and
// only redirects and realms naming an address literally are checked
// (allowedURL).
type dialPolicy struct {
	host    string // the configured upstream's host name or address, lower case, no port
	byName  bool   // configured by name: the kind is learnt at the first connection
	proxies map[string]bool

	mu     sync.Mutex
	pinned bool
	kind   addrClass // the upstream's own kind, once pinned
}

func newDialPolicy(base *url.URL) *dialPolicy {
	p := &dialPolicy{host: strings.ToLower(base.Hostname()), proxies: proxyAddrs()}
	if a, err := netip.ParseAddr(p.host); err == nil {
		p.pinned, p.kind = true, classify(a)
	} else {
		p.byName = true
	}
	return p
}

// proxyAddrs are the host:port of the HTTP proxies the environment names
// (what http.ProxyFromEnvironment would connect to).
func proxyAddrs() map[string]bool {
	out := map[string]bool{}
	for _, k := range []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"} {
		v := os.Getenv(k)
		if v == "" {
			continue
		}
		if !strings.Contains(v, "://") {
			v = "http://" + v
		}
		u, err := url.Parse(v)
		if err != nil || u.Hostname() == "" {
			continue
		}
		port := u.Port()
		if port == "" {
			port = map[string]string{"https": "443", "socks5": "1080"}[u.Scheme]
			if port == "" {
				port = "80"
			}
		}
		out[strings.ToLower(net.JoinHostPort(u.Hostname(), port))] = true
	}
	return out
}

// allow decides one connection to address a; own says the connection is
// to the configured upstream host itself.
func (p *dialPolicy) allow(a netip.Addr, own bool) error {
	k := classify(a)
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.pinned && own && p.byName && (k == classPublic || k == classPrivate || k == classLoopback) {
		p.pinned, p.kind = true, k // a public first connection is pinned too: it never widens later
	}
	if k == classPublic || p.pinned && k == p.kind {
		return nil
	}
	upKind := "not yet known"
	if p.pinned {
		upKind = p.kind.String()
	}
	return fmt.Errorf("%s is a %s address and the upstream %s is on a %s one: %w", a, k, p.host, upKind, ErrForbiddenAddress)
}

// allowedURL checks a redirect target or token realm before it is
// followed: http or https only, and an address written in the URL must
// pass the policy. Names are checked when they are dialed.
func (p *dialPolicy) allowedURL(u *url.URL) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("refusing a %q URL: %w", u.Scheme, ErrForbiddenAddress)
	}
	if a, err := netip.ParseAddr(u.Hostname()); err == nil {
		return p.allow(a, strings.EqualFold(u.Hostname(), p.host))
	}
	return nil
}

// dialContext connects as d does, with every address it tries checked
// by the policy first.
func (p *dialPolicy) dialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if p.proxies[strings.ToLower(addr)] {
			return d.DialContext(ctx, network, addr)
		}
		host, _, _ := net.SplitHostPort(addr)
		own := strings.EqualFold(strings.Trim(host, "[]"), p.host)
		checked := *d
		checked.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("unreadable address %q: %w", address, ErrForbiddenAddress)
			}
			return p.allow(ap.Addr(), own)
		}
		return checked.DialContext(ctx, network, addr)
	}
}

// withPolicy returns rt with the policy installed in its dialer: the
// client's own transport, or a configured *http.Transport that dials as
// the standard library does (cloned, not changed). A transport with its
// own dialer, or another RoundTripper, is trusted to apply its own policy.
func (p *dialPolicy) withPolicy(rt http.RoundTripper) http.RoundTripper {
	t, ok := rt.(*http.Transport)
	if !ok || t.DialContext != nil || t.Dial != nil || t.DialTLSContext != nil || t.DialTLS != nil { //nolint:staticcheck // Dial and DialTLS are deprecated, and still used if set
		return rt
	}
	t = t.Clone()
	t.DialContext = p.dialContext(&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second})
	// Accept-Encoding: identity is sent on every request (Client.do); a
	// transport that added gzip and inflated the answer would verify bytes
	// other than those sent, and inflate without bound.
	t.DisableCompression = true
	return t
}
