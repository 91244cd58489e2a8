package upstream

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestTableClassify: the kinds of network the dial policy tells apart,
// including the addresses SSRF write-ups use to slip past naive checks
// (0.0.0.0 reaches the local host on Linux, IPv4-mapped and NAT64 forms of
// the metadata address, AWS's IPv6 metadata address inside fc00::/7).
func TestTableClassify(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want addrClass
	}{
		{"93.184.215.14", classPublic},
		{"2606:4700::6810:84e5", classPublic},
		{"127.0.0.1", classLoopback},
		{"127.8.9.10", classLoopback},
		{"::1", classLoopback},
		{"::ffff:127.0.0.1", classLoopback},
		{"169.254.169.254", classLinkLocal},
		{"::ffff:169.254.169.254", classLinkLocal},
		{"64:ff9b::a9fe:a9fe", classLinkLocal},
		{"fd00:ec2::254", classLinkLocal},
		{"fe80::1", classLinkLocal},
		{"10.0.0.1", classPrivate},
		{"172.16.5.4", classPrivate},
		{"192.168.1.1", classPrivate},
		{"100.64.0.1", classPrivate},
		{"fd12:3456::1", classPrivate},
		{"0.0.0.0", classOther},
		{"::", classOther},
		{"224.0.0.1", classOther},
		{"255.255.255.255", classOther},
		{"198.18.0.1", classOther},
		{"2001:db8::1", classOther},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			if got := classify(netip.MustParseAddr(tc.addr)); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// TestDialPolicyChecksTheAddressDialed: the policy is applied to the
// address a connection is made to, after name resolution, so a name that
// resolves to a forbidden address (DNS rebinding: a public-looking name
// answered with 127.0.0.1 at the moment of the dial) is refused like the
// address itself, and no connection is made. "localhost" stands in for
// such a name: it is the one name that resolves to a non-public address
// on every machine without touching DNS. A named upstream's own kind is
// learnt at its first connection and fixed from then on.
func TestDialPolicyChecksTheAddressDialed(t *testing.T) {
	for _, tc := range []struct {
		name     string
		upstream string   // the configured upstream URL
		dials    []string // in order; all but the last must succeed
		wantOK   bool     // the last dial
	}{
		{"public upstream, name resolving to loopback", "https://93.184.215.14", []string{"localhost:PORT"}, false},
		{"public upstream, loopback address", "https://93.184.215.14", []string{"127.0.0.1:PORT"}, false},
		{"public upstream, 0.0.0.0", "https://93.184.215.14", []string{"0.0.0.0:PORT"}, false},
		{"public upstream, metadata service", "https://93.184.215.14", []string{"169.254.169.254:80"}, false},
		{"public upstream, IPv6 metadata service", "https://93.184.215.14", []string{"[fd00:ec2::254]:80"}, false},
		{"loopback upstream, loopback name", "http://127.0.0.1:PORT", []string{"localhost:PORT"}, true},
		{"loopback upstream, metadata service", "http://127.0.0.1:PORT", []string{"169.254.169.254:80"}, false},
		{"loopback upstream, private address", "http://127.0.0.1:PORT", []string{"10.0.0.1:80"}, false},
		{"loopback upstream, 0.0.0.0", "http://127.0.0.1:PORT", []string{"0.0.0.0:PORT"}, false},
		{"named upstream learns loopback", "http://localhost:PORT", []string{"localhost:PORT", "127.0.0.1:PORT"}, true},
		{"named upstream on loopback, then private", "http://localhost:PORT", []string{"localhost:PORT", "10.0.0.1:80"}, false},
		{"named upstream, first dial elsewhere learns nothing", "http://localhost:PORT", []string{"127.0.0.1:PORT"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, accepted := countingListener(t)
			_, port, _ := net.SplitHostPort(ln.Addr().String())
			ports := strings.NewReplacer("PORT", port)
			base, _ := url.Parse(ports.Replace(tc.upstream))
			dial := newDialPolicy(base).dialContext(&net.Dialer{Timeout: 2 * time.Second})
			var err error
			for i, addr := range tc.dials {
				addr = ports.Replace(addr)
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				var c net.Conn
				c, err = dial(ctx, "tcp", addr)
				cancel()
				if c != nil {
					c.Close()
				}
				if i < len(tc.dials)-1 && err != nil {
					t.Fatalf("dial %s: %v, want a connection", addr, err)
				}
			}
			last := ports.Replace(tc.dials[len(tc.dials)-1])
			if tc.wantOK && err != nil {
				t.Fatalf("dial %s: got %v, want a connection", last, err)
			}
			if !tc.wantOK {
				if !errors.Is(err, ErrForbiddenAddress) {
					t.Fatalf("dial %s: got %v, want ErrForbiddenAddress", last, err)
				}
				// Wait for a connection that should not have happened.
				time.Sleep(20 * time.Millisecond)
				if got, want := accepted.Load(), int64(len(tc.dials)-1); got != want {
					t.Errorf("got %d connections accepted, want %d", got, want)
				}
			}
		})
	}
}

// countingListener accepts and closes connections on 127.0.0.1, counting them.
func countingListener(t *testing.T) (net.Listener, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	return ln, &accepted
}

// TestDialPolicyKindIsFixedAtFirstConnection: a named upstream first
// reached on a public address stays a public upstream: its name resolving
// to a private or loopback address later (DNS rebinding of the upstream's
// own name) does not make those reachable, for it or for its redirects.
func TestDialPolicyKindIsFixedAtFirstConnection(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first string // the first connection to the upstream's own host
		then  string
		own   bool // then is the upstream's own host too
		want  bool
	}{
		{"public, then private for itself", "93.184.215.14", "10.0.0.5", true, false},
		{"public, then loopback for a redirect", "93.184.215.14", "127.0.0.1", false, false},
		{"public, then public", "93.184.215.14", "140.82.112.3", false, true},
		{"private, then the same kind", "10.0.0.5", "10.1.2.3", false, true},
		{"private, then loopback", "10.0.0.5", "127.0.0.1", true, false},
		{"link-local is never learnt", "169.254.169.254", "169.254.169.254", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, _ := url.Parse("https://registry.example")
			p := newDialPolicy(base)
			p.allow(netip.MustParseAddr(tc.first), true)
			err := p.allow(netip.MustParseAddr(tc.then), tc.own)
			if got := err == nil; got != tc.want {
				t.Errorf("got allowed %v (%v), want %v", got, err, tc.want)
			}
		})
	}
}
