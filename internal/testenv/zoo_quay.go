package testenv

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// QuayLike stands in for quay: it has the OCI referrers API (quay/quay#1706
// added it; the registry behind it answers it), tags are listed in pages
// linked by an opaque token (quayTagPages), and besides current manifests (from the
// registry behind it), old tags are signed Docker schema 1 manifests,
// served as quay serves them (quay/quay endpoints/v2/manifest.py,
// fetch_manifest_by_tagname and fetch_manifest_by_digest): the exact signed
// bytes, Content-Type application/vnd.docker.distribution.manifest.v1+prettyjws,
// Docker-Content-Digest the digest of the payload without signatures, no
// ETag. Schema 1 cannot be pushed to the registries the zoo is built on,
// so those tags are scripted answers (Schema1.Set); their layers are
// real blobs in the registry.
func QuayLike(t testing.TB) *ZooMember {
	t.Helper()
	reg := InProcessRegistry(t, registry.WithReferrersSupport(true))
	s1 := &Schema1Tags{refs: map[string]schema1Tag{}}
	m := NewZooMember(t, "quay-like", reg, s1.serve, quayTagPages(reg))
	m.Schema1 = s1
	return m
}

// Schema1Tags holds the scripted schema 1 tags of a quay-like member.
type Schema1Tags struct {
	mu   sync.Mutex
	refs map[string]schema1Tag // "<repo>@<tag or digest>"
}

type schema1Tag struct {
	signed []byte
	digest string
}

// Set makes repo:tag (and repo@digest) answer with a signed schema 1
// manifest whose registry digest is digest.
func (s *Schema1Tags) Set(repo, tag string, signed []byte, digest v1.Hash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := schema1Tag{signed: signed, digest: digest.String()}
	s.refs[repo+"@"+tag] = e
	s.refs[repo+"@"+digest.String()] = e
}

func (s *Schema1Tags) serve(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		repo, ref, ok := manifestRef(r.URL.Path)
		if ok && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			s.mu.Lock()
			e, scripted := s.refs[repo+"@"+ref]
			s.mu.Unlock()
			if scripted {
				w.Header().Set("Content-Type", string(types.DockerManifestSchema1Signed))
				w.Header().Set("Docker-Content-Digest", e.digest)
				w.Header().Set("Content-Length", strconv.Itoa(len(e.signed)))
				w.WriteHeader(http.StatusOK)
				if r.Method == http.MethodGet {
					w.Write(e.signed)
				}
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Schema1Image pushes layers random layer blobs to reg and returns a
// schema 1 manifest for repo:tag over them, signed the way docker and
// distribution signed them (docker/libtrust jsonsign.go: a JWS with an
// ES256 key, in "pretty signature" form), and its registry digest (the
// SHA-256 of the payload without signatures). With two signatures the
// manifest carries two signature blocks, as re-signed manifests do.
func Schema1Image(t testing.TB, reg *url.URL, repo, tag string, layers, signatures int) ([]byte, v1.Hash) {
	t.Helper()
	type fsLayer struct {
		BlobSum string `json:"blobSum"`
	}
	type history struct {
		V1Compatibility string `json:"v1Compatibility"`
	}
	manifest := struct {
		SchemaVersion int       `json:"schemaVersion"`
		Name          string    `json:"name"`
		Tag           string    `json:"tag"`
		Architecture  string    `json:"architecture"`
		FSLayers      []fsLayer `json:"fsLayers"`
		History       []history `json:"history"`
	}{SchemaVersion: 1, Name: repo, Tag: tag, Architecture: "amd64"}
	repoRef, err := name.NewRepository(reg.Host+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	parent := ""
	for i := 0; i < layers; i++ {
		l, err := random.Layer(4<<10, types.DockerLayer)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.WriteLayer(repoRef, l); err != nil {
			t.Fatalf("seed schema 1 layer: %v", err)
		}
		d, _ := l.Digest()
		id := fmt.Sprintf("%x", sha256.Sum256([]byte(d.String())))
		compat := fmt.Sprintf(`{"id":%q,"created":"2015-06-01T00:00:00Z","container_config":{"Cmd":null}}`, id)
		if parent != "" {
			compat = fmt.Sprintf(`{"id":%q,"parent":%q,"created":"2015-06-01T00:00:00Z","container_config":{"Cmd":null}}`, id, parent)
		}
		parent = id
		// schema 1 lists the newest layer first.
		manifest.FSLayers = append([]fsLayer{{BlobSum: d.String()}}, manifest.FSLayers...)
		manifest.History = append([]history{{V1Compatibility: compat}}, manifest.History...)
	}
	payload, err := json.MarshalIndent(manifest, "", "   ")
	if err != nil {
		t.Fatal(err)
	}
	signed := signPretty(t, payload, signatures)
	sum := sha256.Sum256(payload)
	return signed, v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sum)}
}

// signPretty signs a JSON object (indented with three spaces) as libtrust's
// NewJSONSignature + Sign + PrettySignature("signatures") do: the part of
// the payload before its closing "\n}" is kept, a "signatures" member is
// appended, and each signature's protected header records formatLength and
// formatTail so that a verifier can cut the payload back out.
func signPretty(t testing.TB, payload []byte, n int) []byte {
	t.Helper()
	const indent = "   "
	end := bytes.LastIndexFunc(payload[:bytes.LastIndexByte(payload, '}')], func(r rune) bool { return !strings.ContainsRune(" \t\r\n", r) })
	formatLength := end + 1
	formatTail := payload[formatLength:]
	b64 := base64.RawURLEncoding.EncodeToString
	type jwk struct {
		Crv string `json:"crv"`
		Kid string `json:"kid"`
		Kty string `json:"kty"`
		X   string `json:"x"`
		Y   string `json:"y"`
	}
	type header struct {
		JWK jwk    `json:"jwk"`
		Alg string `json:"alg"`
	}
	type signature struct {
		Header    header `json:"header"`
		Signature string `json:"signature"`
		Protected string `json:"protected"`
	}
	var sigs []signature
	for i := 0; i < n; i++ {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		protected, _ := json.Marshal(map[string]any{
			"formatLength": formatLength,
			"formatTail":   b64(formatTail),
			"time":         time.Date(2015, 6, 1, 0, 0, i, 0, time.UTC).Format(time.RFC3339),
		})
		prot := b64(protected)
		digest := sha256.Sum256([]byte(prot + "." + b64(payload)))
		r, s, err := ecdsa.Sign(rand.Reader, key, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		pub := key.PublicKey
		point, err := pub.ECDH()
		if err != nil {
			t.Fatal(err)
		}
		xy := point.Bytes() // 0x04 || X || Y
		sigs = append(sigs, signature{
			Header: header{
				JWK: jwk{Crv: "P-256", Kid: libtrustKeyID(t, &pub), Kty: "EC", X: b64(xy[1:33]), Y: b64(xy[33:])},
				Alg: "ES256",
			},
			Signature: b64(sig),
			Protected: prot,
		})
	}
	block, err := json.MarshalIndent(sigs, indent, indent)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	out.Write(payload[:formatLength])
	out.WriteString(",\n" + indent + `"signatures": `)
	out.Write(block)
	out.WriteString("\n}")
	return out.Bytes()
}

// libtrustKeyID is libtrust's key id: the SHA-256 of the DER public key,
// first 240 bits, base32 in colon-separated groups of four.
func libtrustKeyID(t testing.TB, pub *ecdsa.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	s := strings.TrimRight(base32.StdEncoding.EncodeToString(sum[:30]), "=")
	var groups []string
	for i := 0; i < len(s); i += 4 {
		groups = append(groups, s[i:min(i+4, len(s))])
	}
	return strings.Join(groups, ":")
}
