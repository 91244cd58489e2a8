package proxy_test

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"sync"
	"testing"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// sniffListener records the first bytes every connection sends, so a test
// can see what went over the wire in cleartext (a TLS server answers a
// plain-http request with 400, but by then the request has been sent).
type sniffListener struct {
	net.Listener
	mu   sync.Mutex
	seen bytes.Buffer
}

func (l *sniffListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &sniffConn{Conn: c, l: l}, nil
}

func (l *sniffListener) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen.String()
}

type sniffConn struct {
	net.Conn
	l *sniffListener
	n int
}

func (c *sniffConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.n < 4096 && n > 0 {
		c.l.mu.Lock()
		c.l.seen.Write(p[:n])
		c.l.mu.Unlock()
		c.n += n
	}
	return n, err
}

// An https upstream whose challenge names a plain-http token realm on its
// own host must not get the configured password in cleartext: the token
// flow is refused before any byte is sent.
func TestNoCredentialsOverPlainHTTPRealm(t *testing.T) {
	reg := testenv.InProcessRegistry(t)
	testenv.SeedImage(t, reg, "org/app:1", 1<<10, 1)
	rp := httputil.NewSingleHostReverseProxy(reg)
	const user, pass = "robot", "cleartext-secret-pw"
	sniff := &sniffListener{}
	var up *httptest.Server
	up = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			// Same host and port, but http: the downgrade under test.
			w.Header().Set("WWW-Authenticate", `Bearer realm="http://`+r.Host+`/token",service="reg"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sniff.Listener = l
	up.Listener = sniff
	up.StartTLS()
	t.Cleanup(up.Close)

	m := multiMirror(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways}, proxy.UpstreamConfig{Host: "registry.example", URL: up.URL, Username: user, Password: pass, Transport: up.Client().Transport})
	resp := do(t, http.MethodGet, m.URL+"/v2/registry.example/org/app/manifests/1", nil)
	if resp.StatusCode < 400 {
		t.Errorf("got %d, want an error: the only realm offered is plain http", resp.StatusCode)
	}
	if wire := sniff.String(); strings.Contains(wire, "Authorization") || strings.Contains(wire, basic(user, pass)) {
		t.Errorf("credentials went over plain http:\n%q", wire)
	}
}
