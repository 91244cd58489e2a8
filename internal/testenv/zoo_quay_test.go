package testenv

import (
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/docker/libtrust"
)

// TestSchema1ImageIsWhatLibtrustSigns checks the zoo's schema 1 manifests
// with libtrust itself, the library docker and distribution sign and
// verify them with: the signatures verify, and the payload they cover
// hashes to the digest the quay-like member announces.
func TestSchema1ImageIsWhatLibtrustSigns(t *testing.T) {
	reg := InProcessRegistry(t)
	for _, n := range []int{1, 2} {
		signed, d := Schema1Image(t, reg, "legacy/app", "old", 2, n)
		js, err := libtrust.ParsePrettySignature(signed, "signatures")
		if err != nil {
			t.Fatalf("%d signatures: parse: %v", n, err)
		}
		keys, err := js.Verify()
		if err != nil || len(keys) != n {
			t.Fatalf("%d signatures: verify: got %d keys, %v", n, len(keys), err)
		}
		payload, err := js.Payload()
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("sha256:%x", sha256.Sum256(payload)); got != d.String() {
			t.Errorf("%d signatures: payload digest %s, want %s", n, got, d)
		}
		if keys[0].KeyID() == "" {
			t.Errorf("no key id")
		}
	}
}
