package testenv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// InProcessRegistry starts go-containerregistry's registry (a real
// implementation of the distribution API, in memory) and returns its URL.
func InProcessRegistry(t testing.TB, opts ...registry.Option) *url.URL {
	t.Helper()
	srv := httptest.NewServer(registry.New(append([]registry.Option{registry.Logger(log.New(io.Discard, "", 0))}, opts...)...))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return u
}

// DistributionRegistry starts the distribution v3 registry binary with
// filesystem storage and returns its URL.
func DistributionRegistry(t testing.TB) *url.URL {
	t.Helper()
	bin := Tool(t, "registry")
	dir := t.TempDir()
	addr := FreeAddr(t)
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr)
	path := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	Start(t, []string{"OTEL_TRACES_EXPORTER=none"}, bin, "serve", path)
	WaitHTTP(t, "http://"+addr+"/v2/", 20*time.Second)
	u, _ := url.Parse("http://" + addr)
	return u
}

// Fault is a failure the Upstream wrapper injects.
type Fault int

const (
	FaultNone     Fault = iota
	FaultCorrupt        // flip one byte of a blob body, keep its length
	FaultTruncate       // send half the blob with a matching Content-Length
	FaultCut            // announce the full length, send half, drop the connection
	Fault429            // answer 429 with Retry-After
	Fault500            // answer 500
	FaultDown           // close every connection without an answer
	FaultSlow           // stall 2s before answering
	FaultNoHead         // refuse HEAD with 403, as some registries' blob storage does
	FaultThrottle       // send blob bodies at about 4 MiB/s
	// FaultHang reads the request and never answers (until the client
	// gives up or the test ends): an upstream that accepts connections and
	// hangs, as unreachable upstreams behind a load balancer did to quay's
	// proxy cache (quay/quay PR #5347) and ghcr.io's outage did to
	// Harbor's (goharbor/harbor #18294, PR #23714).
	FaultHang
)

// Upstream is a reverse proxy in front of a real registry that counts
// requests and injects faults. It stands between the mirror and the
// registry, like the network would.
type Upstream struct {
	URL *url.URL

	mu     sync.Mutex
	counts map[string]int
	fault  Fault
	kind   string // "" = every request, else "blob", "manifest", "tags"
	auth   *tokenAuth
	header http.Header // added to every answer

	intercept func(http.ResponseWriter, *http.Request) bool

	done chan struct{} // closed when the test ends: hung requests let go

	tracking bool        // since CutOnce: blob GETs are watched
	cutMin   int         // the armed cut's minimum size; 0 once it happened
	cutEvery int         // CutEvery: bytes of each blob answer sent before the cut; 0: off
	cutPath  string      // the path CutOnce cut
	ranged   []RangedGet // blob GETs with a Range header, since CutOnce
}

// Intercept lets fn see every request first; a request fn reports it
// answered goes no further. For faults too particular to name here.
func (u *Upstream) Intercept(fn func(http.ResponseWriter, *http.Request) bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.intercept = fn
}

// RangedGet is a blob GET with a Range header and the status it got.
type RangedGet struct {
	Path, Range string
	Status      int
}

// CutOnce arms a one-shot FaultCut: the next blob GET without Range whose
// body has at least minSize bytes gets half of it and a dropped
// connection (smaller blobs, such as image configs, pass). From then on
// ranged blob GETs are recorded, to see a client resume.
func (u *Upstream) CutOnce(minSize int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.tracking, u.cutMin = true, minSize
}

// CutEvery makes the wrapper behave as a middlebox that cuts long
// transfers (harbor #23600 / PR #23601, containerd PR #5921: proxies and
// load balancers that drop a connection after a byte or time budget):
// every blob GET answer, whole (200) or ranged (206), announces its full
// length and is cut after n bytes of body. 0 turns it off.
func (u *Upstream) CutEvery(n int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.cutEvery = n
}

// Cut returns the path CutOnce cut ("" if none yet) and the ranged blob
// GETs seen since it was armed.
func (u *Upstream) Cut() (string, []RangedGet) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.cutPath, slices.Clone(u.ranged)
}

// track records a watched blob GET and reports whether it is the one to cut.
func (u *Upstream) track(r *http.Request, status, size int) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if rng := r.Header.Get("Range"); rng != "" {
		u.ranged = append(u.ranged, RangedGet{Path: r.URL.Path, Range: rng, Status: status})
		return false
	}
	if u.cutMin == 0 || status != http.StatusOK || size < u.cutMin {
		return false
	}
	u.cutMin, u.cutPath = 0, r.URL.Path
	return true
}

// SetHeader adds a header to every answer, as a registry's rate-limit
// headers would be.
func (u *Upstream) SetHeader(k, v string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.header == nil {
		u.header = http.Header{}
	}
	u.header.Set(k, v)
}

// NewUpstream wraps target.
func NewUpstream(t testing.TB, target *url.URL) *Upstream {
	t.Helper()
	u := &Upstream{counts: map[string]int{}, done: make(chan struct{})}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ErrorLog = log.New(io.Discard, "", 0)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.serve(w, r, rp)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(u.done) }) // before srv.Close, which waits for handlers
	u.URL, _ = url.Parse(srv.URL)
	return u
}

// Kind classifies a registry request path.
func Kind(path string) string {
	switch {
	case strings.HasSuffix(path, "/token"):
		return "token"
	case strings.Contains(path, "/blobs/"):
		return "blob"
	case strings.Contains(path, "/manifests/"):
		return "manifest"
	case strings.HasSuffix(path, "/tags/list"):
		return "tags"
	case strings.Contains(path, "/referrers/"):
		return "referrers"
	}
	return "other"
}

// Count returns how many requests of method and kind ("blob", "manifest",
// "tags", "token", "other") reached the wrapper; method "" counts all.
func (u *Upstream) Count(method, kind string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if method == "" {
		return u.counts["GET "+kind] + u.counts["HEAD "+kind]
	}
	return u.counts[method+" "+kind]
}

// Total is the number of requests of any kind.
// CountMethod returns how many requests with method were seen, of any kind.
func (u *Upstream) CountMethod(method string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for k, c := range u.counts {
		if strings.HasPrefix(k, method+" ") {
			n += c
		}
	}
	return n
}

func (u *Upstream) Total() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, c := range u.counts {
		n += c
	}
	return n
}

// Reset zeroes the counters.
func (u *Upstream) Reset() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.counts = map[string]int{}
}

// SetFault injects f into requests of kind ("" for all).
func (u *Upstream) SetFault(f Fault, kind string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.fault, u.kind = f, kind
}

func (u *Upstream) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	kind := Kind(r.URL.Path)
	u.mu.Lock()
	u.counts[r.Method+" "+kind]++
	fault := FaultNone
	if u.kind == "" || u.kind == kind {
		fault = u.fault
	}
	auth, intercept := u.auth, u.intercept
	tracked := u.tracking && r.Method == http.MethodGet && kind == "blob"
	cutEvery := 0
	if r.Method == http.MethodGet && kind == "blob" {
		cutEvery = u.cutEvery
	}
	for k, v := range u.header {
		w.Header()[k] = v
	}
	u.mu.Unlock()

	if intercept != nil && intercept(w, r) {
		return
	}
	if auth != nil && !auth.allow(w, r, u.URL) {
		return
	}
	switch fault {
	case FaultDown:
		hijackClose(w)
		return
	case FaultHang:
		select {
		case <-r.Context().Done():
		case <-u.done:
		case <-time.After(5 * time.Minute):
		}
		hijackClose(w)
		return
	case Fault429:
		w.Header().Set("Retry-After", "2")
		http.Error(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}`, http.StatusTooManyRequests)
		return
	case Fault500:
		http.Error(w, "boom", http.StatusInternalServerError)
		return
	case FaultSlow:
		time.Sleep(2 * time.Second)
	case FaultNoHead:
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusForbidden)
			return
		}
	}
	passthrough := fault == FaultNone || fault == FaultSlow || fault == FaultNoHead || r.Method != http.MethodGet || kind != "blob"
	if passthrough && !tracked && cutEvery == 0 {
		next.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	if cutEvery > 0 && (rec.Code == http.StatusOK || rec.Code == http.StatusPartialContent) && len(body) > cutEvery {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(rec.Code)
		w.Write(body[:cutEvery])
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		panic(http.ErrAbortHandler)
	}
	if tracked && u.track(r, rec.Code, len(body)) {
		fault, passthrough = FaultCut, false
	}
	if passthrough || rec.Code != http.StatusOK || len(body) < 2 {
		w.WriteHeader(rec.Code)
		w.Write(body)
		return
	}
	switch fault {
	case FaultCorrupt:
		body = bytes.Clone(body)
		body[len(body)/2] ^= 0xff
	case FaultTruncate:
		body = body[:len(body)/2]
	case FaultThrottle:
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		for len(body) > 0 {
			n := min(len(body), 128<<10)
			if _, err := w.Write(body[:n]); err != nil {
				return
			}
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
			body = body[n:]
			time.Sleep(30 * time.Millisecond)
		}
		return
	case FaultCut:
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		w.Write(body[:len(body)/2])
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		panic(http.ErrAbortHandler)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

func hijackClose(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			c.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// RequireToken makes the wrapper demand the bearer-token flow: requests
// without a token it issued get 401 with a challenge whose realm is
// realm (empty: its own /token endpoint). With username set, the token
// endpoint demands those basic-auth credentials.
func (u *Upstream) RequireToken(realm, username, password string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.auth = &tokenAuth{realm: realm, username: username, password: password, tokens: map[string]bool{}}
}

// TokenLog returns the Authorization headers the token endpoint received.
func (u *Upstream) TokenLog() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.auth == nil {
		return nil
	}
	u.auth.mu.Lock()
	defer u.auth.mu.Unlock()
	return append([]string(nil), u.auth.seen...)
}

type tokenAuth struct {
	realm, username, password string

	mu     sync.Mutex
	tokens map[string]bool
	seen   []string
}

func (a *tokenAuth) allow(w http.ResponseWriter, r *http.Request, self *url.URL) bool {
	if r.URL.Path == "/token" {
		a.mu.Lock()
		a.seen = append(a.seen, r.Header.Get("Authorization"))
		a.mu.Unlock()
		if a.username != "" {
			user, pass, ok := r.BasicAuth()
			if !ok || user != a.username || pass != a.password {
				http.Error(w, `{"details":"bad credentials"}`, http.StatusUnauthorized)
				return false
			}
		}
		scope := r.URL.Query().Get("scope")
		if !strings.HasPrefix(scope, "repository:") {
			http.Error(w, `{"details":"no scope"}`, http.StatusBadRequest)
			return false
		}
		issueToken(w, &a.mu, a.tokens)
		return false
	}
	if r.URL.Path == "/v2/" || r.URL.Path == "/v2" {
		return true
	}
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	a.mu.Lock()
	ok := a.tokens[tok]
	a.mu.Unlock()
	if ok {
		r.Header.Del("Authorization")
		return true
	}
	realm := a.realm
	if realm == "" {
		realm = self.String() + "/token"
	}
	repo := strings.TrimPrefix(r.URL.Path, "/v2/")
	for _, sep := range []string{"/manifests/", "/blobs/", "/tags/"} {
		if i := strings.Index(repo, sep); i >= 0 {
			repo = repo[:i]
		}
	}
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q,service="testenv",scope="repository:%s:pull"`, realm, repo))
	http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
	return false
}

// Ctx is a context bounded for a test's outbound calls.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// Silent is a TCP server that accepts connections, reads what it is sent
// and never writes a byte, until the test ends: an upstream that hangs
// (FaultHang) seen from below HTTP. Through an https:// URL a client
// never completes the TLS handshake (its connect phase hangs); through
// http:// it never gets a response header. Accepted counts connections.
type Silent struct {
	Addr string

	mu       sync.Mutex
	accepted int
}

// NewSilent starts a Silent server on 127.0.0.1.
func NewSilent(t testing.TB) *Silent {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Silent{Addr: ln.Addr().String()}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.accepted++
			conns = append(conns, c)
			s.mu.Unlock()
			go io.Copy(io.Discard, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return s
}

// Accepted is the number of connections accepted so far.
func (s *Silent) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}
