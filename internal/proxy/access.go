package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/pullthrough/pullthrough/internal/oci"
)

// AccessConfig restricts who may use the mirror. Empty fields do not
// restrict. Tokens and Users together: either kind of credential works.
type AccessConfig struct {
	// Tokens are static bearer tokens ("Authorization: Bearer <token>",
	// which containerd can send from hosts.toml).
	Tokens []string
	// Users maps user names to passwords for basic auth (docker login).
	Users map[string]string
	// CIDRs are the source networks allowed in.
	CIDRs []string
	// Hosts, when not empty, are the DNS names the mirror answers to in the
	// request's Host header (port ignored, case-insensitive); IP literals
	// are always answered. This is the DNS-rebinding defence of a local
	// server: a name an attacker controls that resolves to 127.0.0.1 is
	// refused. "*" answers every name (as does an empty list).
	Hosts []string
}

type access struct {
	tokens   [][32]byte // sha256 of each token: compared in constant time
	users    map[string][32]byte
	prefixes []netip.Prefix
	hosts    map[string]bool // nil: any Host
}

// newAccess compiles a validated AccessConfig (see AccessConfig.Validate):
// credentials are kept as SHA-256 sums, networks as prefixes.
func newAccess(c AccessConfig) access {
	a := access{users: map[string][32]byte{}}
	for _, h := range c.Hosts {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "*" {
			a.hosts = nil
			break
		}
		if h != "" {
			if a.hosts == nil {
				a.hosts = map[string]bool{}
			}
			a.hosts[h] = true
		}
	}
	for _, t := range c.Tokens {
		a.tokens = append(a.tokens, sha256.Sum256([]byte(t)))
	}
	for u, p := range c.Users {
		a.users[u] = sha256.Sum256([]byte(p))
	}
	for _, s := range c.CIDRs {
		if pfx, err := parseCIDR(s); err == nil && pfx.IsValid() {
			a.prefixes = append(a.prefixes, pfx)
		}
	}
	return a
}

// check admits or refuses a request. The source address is the
// connection's (locally) or the function URL's sourceIp (in Lambda, where
// lambdaurl puts it in RemoteAddr); proxy headers are not trusted.
func (a access) check(r *http.Request) error {
	if err := a.checkBrowser(r); err != nil {
		return err
	}
	if len(a.prefixes) > 0 {
		host := r.RemoteAddr
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		addr, err := netip.ParseAddr(host)
		if err != nil {
			return oci.ErrDenied.With("source address not allowed", nil)
		}
		addr = addr.Unmap()
		ok := false
		for _, p := range a.prefixes {
			if p.Contains(addr) {
				ok = true
				break
			}
		}
		if !ok {
			return oci.ErrDenied.With("source address not allowed", nil)
		}
	}
	if len(a.tokens) == 0 && len(a.users) == 0 {
		return nil
	}
	h := r.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(h, "Bearer "); ok {
		sum := sha256.Sum256([]byte(tok))
		match := 0
		for _, t := range a.tokens {
			match |= subtle.ConstantTimeCompare(sum[:], t[:])
		}
		if match == 1 {
			return nil
		}
		return errRejected
	} else if user, pass, ok := r.BasicAuth(); ok {
		want, known := a.users[user]
		sum := sha256.Sum256([]byte(pass))
		if known && subtle.ConstantTimeCompare(sum[:], want[:]) == 1 {
			return nil
		}
		return errRejected
	}
	if h != "" {
		return errRejected // a scheme the mirror does not take
	}
	return oci.ErrUnauthorized
}

// errRejected answers credentials that were sent and do not match: the
// same 401 and challenge as missing ones (so that clients retry with what
// they have), but said, and logged, as rejected. It never says which part
// was wrong.
var errRejected = oci.ErrUnauthorized.With("credentials rejected", errors.New("client credentials rejected"))

// checkBrowser refuses what only a web browser sends: a page on another
// site that loads /v2/ URLs (an <img> or fetch() at 127.0.0.1:5000 spends
// the operator's quota and fills the cache), or that reaches the mirror
// under its own DNS name after rebinding it to a local address. Registry
// clients (Docker, containerd, go-containerregistry, containers/image) send
// neither Origin nor Sec-Fetch-* headers. Browsers send Sec-Fetch-Site on
// every request (https://www.w3.org/TR/fetch-metadata/#sec-fetch-site-header)
// and Origin on cross-origin ones (https://fetch.spec.whatwg.org/#origin-header).
func (a access) checkBrowser(r *http.Request) error {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return oci.ErrDenied.With("cross-site browser requests are refused", nil)
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || !strings.EqualFold(u.Host, r.Host) {
			return oci.ErrDenied.With("cross-origin browser requests are refused", nil)
		}
	}
	if a.hosts == nil {
		return nil
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	if _, err := netip.ParseAddr(host); err == nil || a.hosts[host] {
		return nil
	}
	return oci.ErrDenied.With(fmt.Sprintf("host %q is not a name of this mirror (PULLTHROUGH_HOSTS)", oci.Truncate(host)), nil)
}

func (a access) requiresCredentials() bool { return len(a.tokens) > 0 || len(a.users) > 0 }
