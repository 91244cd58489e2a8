package testenv

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// dockerHubService is the service name Docker Hub's challenges carry and
// its token endpoint expects (/work/shared/FACTS.md, "Token endpoint";
// docs.docker.com/reference/api/registry/auth/).
const dockerHubService = "registry.docker.io"

// dockerHubChallenge is the WWW-Authenticate value of a Docker Hub-like
// registry whose realm is on the host realm (the auth.docker.io shape):
// `Bearer realm="<realm>/token",service="registry.docker.io",
// scope="repository:<repo>:pull"`, without scope on /v2/ itself
// (docs.docker.com/reference/api/registry/auth/, "How to authenticate").
func dockerHubChallenge(realm *url.URL, repo string) string {
	c := fmt.Sprintf(`Bearer realm="%s/token",service=%q`, realm, dockerHubService)
	if repo != "" {
		c += fmt.Sprintf(`,scope="repository:%s:pull"`, repo)
	}
	return c
}

// cdnTTL is how long a signed CDN URL stays valid. Docker Hub does not
// document its lifetime; the signatures are short-lived (FACTS), so a
// URL handed to a client must be used at once.
const cdnTTL = 10 * time.Minute

// signedCDN stands in for Docker Hub's blob CDN: blob GETs on the registry
// answer 307 to it (docker/hub-feedback#1675 and #1233 show the redirect
// from a blob GET to the CDN host), at a path that is not a registry API
// path (/registry-v2/docker/registry/v2/blobs/sha256/<2>/<hex>/data,
// distribution's storage layout, which the CDN serves) with a signature
// and expiry in the query (?verify=<unix expiry>-<hmac>). The CDN:
//   - refuses a missing, bad or expired signature with 403;
//   - refuses any Authorization header with 400 and records it: a signed
//     URL is its own authorization, and clients drop credentials on a
//     cross-host redirect (FACTS, tektoncd/plumbing#2340). What Docker's
//     CDN answers then is not documented; S3 presigned URLs answer 400
//     "Only one auth mechanism allowed", modelled here;
//   - serves GET and HEAD (with Range) from the registry's storage.
type signedCDN struct {
	reg  *url.URL
	key  []byte
	now  func() time.Time
	auth *headerLog

	mu    sync.Mutex
	repos map[string]string // blob hex → a repository holding it, learnt at redirect time
}

func newSignedCDN(reg *url.URL) *signedCDN {
	key := make([]byte, 32)
	rand.Read(key)
	return &signedCDN{reg: reg, key: key, now: time.Now, auth: &headerLog{}, repos: map[string]string{}}
}

// sign is the query that makes path valid until exp.
func (c *signedCDN) sign(path string, exp time.Time) string {
	e := strconv.FormatInt(exp.Unix(), 10)
	mac := hmac.New(sha256.New, c.key)
	mac.Write([]byte(path + "\n" + e))
	return "verify=" + e + "-" + hex.EncodeToString(mac.Sum(nil))[:32]
}

// valid checks a path's verify parameter.
func (c *signedCDN) valid(path, verify string) bool {
	e, _, ok := strings.Cut(verify, "-")
	sec, err := strconv.ParseInt(e, 10, 64)
	if !ok || err != nil || c.now().Unix() > sec {
		return false
	}
	return hmac.Equal([]byte("verify="+verify), []byte(c.sign(path, time.Unix(sec, 0))))
}

// blobPath is the CDN path of a blob digest's hex.
func blobPath(hexDigest string) string {
	return "/registry-v2/docker/registry/v2/blobs/sha256/" + hexDigest[:2] + "/" + hexDigest + "/data"
}

// redirectBlobs is the registry side: blob GET and HEAD by digest answer
// 307 to a freshly signed CDN URL (distribution, which Docker Hub runs,
// redirects GET and HEAD alike when its storage middleware redirects:
// distribution registry/storage/blobserver.go).
func (c *signedCDN) redirectBlobs(cdn func() *url.URL) Quirk {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			repo := repoOf(r.URL.Path)
			i := strings.LastIndex(r.URL.Path, "/blobs/sha256:")
			if repo == "" || i < 0 || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
				next.ServeHTTP(w, r)
				return
			}
			h := r.URL.Path[i+len("/blobs/sha256:"):]
			if len(h) != 64 {
				next.ServeHTTP(w, r)
				return
			}
			c.mu.Lock()
			c.repos[h] = repo
			c.mu.Unlock()
			p := blobPath(h)
			w.Header().Set("Location", cdn().String()+p+"?"+c.sign(p, c.now().Add(cdnTTL)))
			w.WriteHeader(http.StatusTemporaryRedirect)
		})
	}
}

func (c *signedCDN) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a := r.Header.Get("Authorization"); a != "" {
		c.auth.add(a)
		http.Error(w, "<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>", http.StatusBadRequest)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !c.valid(r.URL.Path, r.URL.Query().Get("verify")) {
		http.Error(w, "<Error><Code>AccessDenied</Code></Error>", http.StatusForbidden)
		return
	}
	h := strings.TrimSuffix(r.URL.Path[strings.LastIndex(strings.TrimSuffix(r.URL.Path, "/data"), "/")+1:], "/data")
	c.mu.Lock()
	repo := c.repos[h]
	c.mu.Unlock()
	if repo == "" {
		http.NotFound(w, r)
		return
	}
	req := r.Clone(r.Context())
	req.URL.Path, req.URL.RawPath, req.URL.RawQuery = "/v2/"+repo+"/blobs/sha256:"+h, "", ""
	proxyTo(c.reg).ServeHTTP(w, req)
}
