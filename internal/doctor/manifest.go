package doctor

import (
	"context"
	_ "crypto/sha256" // registers sha256 with go-digest
	_ "crypto/sha512" // registers sha512 with go-digest
	"fmt"
	"net/http"

	"github.com/opencontainers/go-digest"
)

// manifests is what the manifest checks saw, for the checks after them.
type manifests struct {
	results     []Result
	head, get   answer        // the tag HEAD and GET, as a client sends them
	digest      digest.Digest // the tag's manifest, verified; "" if unknown
	body        []byte        // its bytes
	contentType string
}

// checkManifests resolves the tag as clients do (HEAD, then GET), judges
// the HEAD by each client's rules, and checks that the bytes served by tag
// and then by digest hash to the digest.
func (d *doctor) checkManifests(ctx context.Context) manifests {
	path := "/v2/" + d.name + "/manifests/" + d.tag
	accept := http.Header{"Accept": {manifestAccept}}
	var m manifests
	m.head = d.call(ctx, http.MethodHead, path, d.ns, true, accept)
	m.get = d.call(ctx, http.MethodGet, path, d.ns, true, accept)
	m.results = clientResults(m.head, m.get)

	const byTag, byDigest = "manifest-get-tag", "manifest-get-digest"
	got, r := verifyManifest(byTag, m.get, "")
	// Clients take the HEAD's digest and length as the descriptor they
	// then fetch and verify by, so both must describe the GET's bytes.
	if hd := m.head.header.Get(hDigest); r.Status == Pass && hd != "" {
		switch {
		case hd != got.String():
			r = fail(byTag, fmt.Sprintf("HEAD says %s but the GET's bytes hash to %s", hd, got),
				"the mirror must answer HEAD and GET of a tag from the same record")
		case m.head.length >= 0 && m.head.length != int64(len(m.get.body)):
			r = fail(byTag, fmt.Sprintf("HEAD says %d bytes but the manifest has %d: clients fetch it with the wrong size and fail", m.head.length, len(m.get.body)),
				"a HEAD must carry the length of the GET's body, or no Content-Length at all")
		}
	}
	m.results = append(m.results, r)
	if r.Status != Pass {
		m.results = append(m.results, notChecked(byDigest, "the tag's manifest could not be read"))
		return m
	}
	byDigestAnswer := d.call(ctx, http.MethodGet, "/v2/"+d.name+"/manifests/"+got.String(), d.ns, true, accept)
	_, r = verifyManifest(byDigest, byDigestAnswer, got)
	m.results = append(m.results, r)
	if r.Status == Pass {
		m.digest, m.body, m.contentType = got, byDigestAnswer.body, byDigestAnswer.header.Get(hContentType)
	}
	return m
}

// verifyManifest checks a manifest GET: 200, the whole body, and bytes
// that hash to want (by digest) or to the Docker-Content-Digest the answer
// claims (by tag). It returns the digest of the bytes.
func verifyManifest(check string, a answer, want digest.Digest) (digest.Digest, Result) {
	switch {
	case a.err != nil:
		return "", fail(check, "GET failed: "+a.err.Error(), "")
	case a.status == http.StatusNotFound:
		return "", fail(check, "GET answered "+a.summary(), "pass --image NAME:TAG of an image that exists on the upstream")
	case a.status != http.StatusOK:
		return "", fail(check, "GET answered "+a.summary(), "see the access and upstream checks")
	case a.length >= 0 && a.length != int64(len(a.body)):
		return "", fail(check, fmt.Sprintf("GET announced %d bytes and sent %d", a.length, len(a.body)), "")
	}
	claimed := a.header.Get(hDigest)
	if want == "" && claimed != "" {
		parsed, err := digest.Parse(claimed)
		if err != nil {
			return "", fail(check, "invalid Docker-Content-Digest "+claimed, "")
		}
		want = parsed
	}
	alg := digest.Canonical
	if want != "" {
		alg = want.Algorithm()
	}
	got := alg.FromBytes(a.body)
	if want != "" && got != want {
		return "", fail(check, fmt.Sprintf("%d bytes hash to %s, not %s: clients refuse the manifest", len(a.body), got, want),
			"the mirror serves damaged manifests: check its store and anything in front of it that rewrites bodies")
	}
	if claimed != "" && claimed != got.String() {
		return "", fail(check, fmt.Sprintf("Docker-Content-Digest says %s but the bytes hash to %s", claimed, got), "")
	}
	return got, pass(check, fmt.Sprintf("%d bytes of %s hash to %s", len(a.body), a.header.Get(hContentType), got))
}
