package oci

import (
	"encoding/base64"
	"fmt"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/pullthrough/pullthrough/internal/testenv"
)

// signatureBlock is a body of 7 bytes of payload followed by signatures
// whose protected headers carry the given formatLength/formatTail pairs.
func signatureBlock(formats ...string) string {
	body := `{"a":1,"signatures":[`
	for i, f := range formats {
		if i > 0 {
			body += ","
		}
		body += fmt.Sprintf(`{"protected":%q}`, base64.RawURLEncoding.EncodeToString([]byte(f)))
	}
	return body + "]}"
}

func TestSchema1Payload(t *testing.T) {
	tail := base64.RawURLEncoding.EncodeToString([]byte("\n}"))
	good := fmt.Sprintf(`{"formatLength":6,"formatTail":%q}`, tail)
	for _, tc := range []struct {
		name, body string
		want       string // "" for no payload
	}{
		{"one signature", signatureBlock(good), "{\"a\":1\n}"},
		{"two agreeing signatures", signatureBlock(good, good), "{\"a\":1\n}"},
		{"conflicting lengths", signatureBlock(good, fmt.Sprintf(`{"formatLength":5,"formatTail":%q}`, tail)), ""},
		{"conflicting tails", signatureBlock(good, `{"formatLength":6,"formatTail":"fQ"}`), ""},
		{"negative length", signatureBlock(fmt.Sprintf(`{"formatLength":-1,"formatTail":%q}`, tail)), ""},
		{"length past the body", signatureBlock(fmt.Sprintf(`{"formatLength":9999,"formatTail":%q}`, tail)), ""},
		{"no format", signatureBlock(`{"time":"x"}`), ""},
		{"protected not base64url", `{"signatures":[{"protected":"%%%"}]}`, ""},
		{"no signatures", `{"schemaVersion":1}`, ""},
		{"not JSON", `{`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := schema1Payload([]byte(tc.body))
			if ok != (tc.want != "") || string(got) != tc.want {
				t.Errorf("got %q, %v; want %q", got, ok, tc.want)
			}
		})
	}
}

// TestManifestDigestsOfASignedSchema1 checks the digest the mirror
// computes against the one the registry announces for a manifest signed
// as libtrust signs (testenv checks that form with libtrust itself).
func TestManifestDigestsOfASignedSchema1(t *testing.T) {
	signed, want := testenv.Schema1Image(t, testenv.InProcessRegistry(t), "legacy/app", "old", 1, 2)
	for _, mt := range []string{MediaSchema1Signed, MediaSchema1, "application/json"} {
		got := ManifestDigests(digest.SHA256, mt, signed)
		if len(got) != 2 || got[0].String() != want.String() || got[1] != digest.FromBytes(signed) {
			t.Errorf("%s: got %v, want [%s, digest of the signed body]", mt, got, want)
		}
	}
	if got := ManifestDigests(digest.SHA256, MediaDockerManifest, signed); len(got) != 1 || got[0] != digest.FromBytes(signed) {
		t.Errorf("schema 2 type: got %v, want only the digest of the bytes", got)
	}
}

func FuzzSchema1Payload(f *testing.F) {
	tail := base64.RawURLEncoding.EncodeToString([]byte("\n}"))
	f.Add(signatureBlock(fmt.Sprintf(`{"formatLength":6,"formatTail":%q}`, tail)))
	f.Add(signatureBlock(`{"formatLength":-3,"formatTail":""}`))
	f.Add(`{"signatures":[]}`)
	f.Fuzz(func(t *testing.T, body string) {
		p, ok := schema1Payload([]byte(body))
		if !ok && p != nil {
			t.Fatalf("%q: payload %q without ok", body, p)
		}
	})
}
