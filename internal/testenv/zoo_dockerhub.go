package testenv

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// DockerHubLike stands in for Docker Hub's registry, on three hosts:
//   - the registry (Front): every /v2/ request, /v2/ itself included,
//     without a token answers 401 with a Bearer challenge whose realm is on
//     another host (dockerHubChallenge); anonymous pull tokens, 300 s, for
//     any (public) repository, each good only for the repositories its
//     scope named (docs.docker.com/reference/api/registry/auth/; FACTS,
//     "Token endpoint");
//   - Realm, the token host (the auth.docker.io shape): /token only;
//   - Other, the blob CDN: blob GETs and HEADs answer 307 to a short-lived
//     signed URL there, outside /v2/ (signedCDN);
//
// and manifests answered as distribution answers them (Docker Hub runs on
// distribution's code; see DockerHubManifests), with its pull-rate headers
// on manifest GETs, HEAD free. Realm and Other count their requests
// (RealmRequests, OtherRequests); the CDN's Authorization headers are in ForeignAuth.
// A mirror must list Realm in its AuthHosts (AuthHosts), as it lists
// Docker Hub's token host by default.
func DockerHubLike(t testing.TB) *ZooMember {
	t.Helper()
	reg := InProcessRegistry(t)
	var realm, cdnURL *url.URL
	gate := &anonTokens{realmPath: "/token", gateBase: true, realmElsewhere: true, scoped: true,
		challenge: func(_, repo string) string { return dockerHubChallenge(realm, repo) }}
	cdn := newSignedCDN(reg)
	realmH, realmN := counted(gate.realm())
	cdnH, cdnN := counted(cdn)
	realm, cdnURL = serveHandler(t, realmH), serveHandler(t, cdnH)
	m := NewZooMember(t, "Docker Hub-like", reg, gate.wrap, DockerHubRateLimit(100),
		cdn.redirectBlobs(func() *url.URL { return cdnURL }), DockerHubManifests)
	m.Realm, m.Other = realm, cdnURL
	m.gates, m.realmHits, m.otherHits, m.cdn = []*anonTokens{gate}, realmN, cdnN, cdn
	return m
}

// PullToken is an anonymous pull token for repo from the member's token
// realm on another host, as "Bearer <token>", for tests that ask the
// member directly; "" for a member without such a realm.
func (m *ZooMember) PullToken(t testing.TB, repo string) string {
	t.Helper()
	if m.Realm == nil {
		return ""
	}
	q := url.Values{"service": {dockerHubService}, "scope": {"repository:" + repo + ":pull"}}
	resp, err := http.Get(m.Realm.String() + "/token?" + q.Encode())
	if err != nil {
		t.Fatalf("pull token: %v", err)
	}
	defer resp.Body.Close()
	var tr struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || tr.Token == "" {
		t.Fatalf("pull token: %d, %v", resp.StatusCode, err)
	}
	return "Bearer " + tr.Token
}

// DockerHubRateLimit counts manifest GETs against an anonymous pull limit
// and reports it in every manifest GET answer as Docker Hub does
// ("ratelimit-limit: 100;w=21600", "ratelimit-remaining: 76;w=21600",
// docs.docker.com/docker-hub/usage/pulls: only manifest GETs count, HEAD
// does not, blobs do not). Over the limit it answers 429 TOOMANYREQUESTS.
func DockerHubRateLimit(limit int) Quirk {
	var mu sync.Mutex
	used := 0
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, _, ok := manifestRef(r.URL.Path); !ok || r.Method != http.MethodGet {
				next.ServeHTTP(w, r)
				return
			}
			mu.Lock()
			used++
			left := limit - used
			mu.Unlock()
			w.Header().Set("ratelimit-limit", strconv.Itoa(limit)+";w=21600")
			w.Header().Set("ratelimit-remaining", strconv.Itoa(max(left, 0))+";w=21600")
			w.Header().Set("docker-ratelimit-source", "127.0.0.1")
			if left < 0 {
				writeRegistryError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS", "You have reached your unauthenticated pull rate limit.")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// Manifest media types the Accept rules below name: the OCI ones from
// image-spec, Docker's (which image-spec lacks) from go-containerregistry,
// not from the mirror under test.
const (
	mtDockerManifest = string(types.DockerManifestSchema2)
	mtDockerList     = string(types.DockerManifestList)
	mtOCIManifest    = ocispec.MediaTypeImageManifest
	mtOCIIndex       = ocispec.MediaTypeImageIndex
)

// DockerHubManifests answers manifest GET and HEAD the way distribution's
// GetManifest does (distribution/distribution registry/handlers/manifests.go;
// FACTS: Docker Hub behaves the same; TestDockerHubLikeAnswersAsDistribution
// compares it with the distribution binary), over a registry that ignores
// Accept:
//   - If-None-Match equal to the stored digest (quoted or not) is 304,
//     checked before anything below; every answer carries Etag.
//   - Accept is split on "," and each part parsed as a media type; only the
//     four manifest types count.
//   - An OCI manifest or OCI index the client did not list: 404
//     MANIFEST_UNKNOWN (for tags and digests alike). For the index this is
//     Docker Hub's answer (FACTS) and the handler's intent, but not what
//     distribution v3.1.2 does: it decodes an index as
//     ocischema.DeserializedImageIndex (manifest/ocischema/index.go), which
//     the handler's manifest-list type check misses, and serves the index.
//   - A Docker manifest list asked for by tag by a client that did not list
//     the list type: the list's first linux/amd64 entry (OS and
//     architecture only), with that image's digest; 404 MANIFEST_UNKNOWN if
//     there is none; 400 MANIFEST_INVALID if the image is Docker schema 2 and
//     the client did not list that either.
//   - Anything else is sent as stored, whatever the Accept header says.
func DockerHubManifests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ref, ok := manifestRef(r.URL.Path)
		if !ok || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
			next.ServeHTTP(w, r)
			return
		}
		rec := innerGet(next, r, r.URL.Path)
		if rec.Code != http.StatusOK {
			copyRecorded(w, r, rec)
			return
		}
		dgst := rec.Header().Get("Docker-Content-Digest")
		for _, v := range r.Header.Values("If-None-Match") {
			if v == dgst || v == `"`+dgst+`"` {
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
		supports := map[string]bool{}
		for _, v := range r.Header.Values("Accept") {
			for _, part := range strings.Split(v, ",") {
				if mt, _, err := mime.ParseMediaType(part); err == nil {
					supports[mt] = true
				}
			}
		}
		mt := rec.Header().Get("Content-Type")
		switch {
		case mt == mtOCIManifest && !supports[mtOCIManifest]:
			writeRegistryError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "OCI manifest found, but accept header does not support OCI manifests")
			return
		case mt == mtOCIIndex && !supports[mtOCIIndex]:
			writeRegistryError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "OCI index found, but accept header does not support OCI indexes")
			return
		case mt == mtDockerList && !isDigest(ref) && !supports[mtDockerList]:
			child := amd64Child(rec.Body.Bytes())
			if child == "" {
				writeRegistryError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
				return
			}
			rec = innerGet(next, r, fmt.Sprintf("/v2/%s/manifests/%s", name, child))
			if rec.Code != http.StatusOK {
				copyRecorded(w, r, rec)
				return
			}
			if rec.Header().Get("Content-Type") == mtDockerManifest && !supports[mtDockerManifest] {
				writeRegistryError(w, http.StatusBadRequest, "MANIFEST_INVALID", "Schema 2 manifest not supported by client")
				return
			}
			dgst = child
		}
		w.Header().Set("Docker-Content-Digest", dgst)
		w.Header().Set("Etag", `"`+dgst+`"`)
		copyRecorded(w, r, rec)
	})
}

// amd64Child is the digest of a list's first linux/amd64 entry, or "".
func amd64Child(list []byte) string {
	var l ocispec.Index
	if json.Unmarshal(list, &l) != nil {
		return ""
	}
	for _, m := range l.Manifests {
		if m.Platform != nil && m.Platform.OS == "linux" && m.Platform.Architecture == "amd64" {
			return m.Digest.String()
		}
	}
	return ""
}
