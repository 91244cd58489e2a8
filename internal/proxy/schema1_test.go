package proxy_test

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/pullthrough/pullthrough/internal/testenv"
)

// TestSchema1SignedManifestServedAsUpstream: an old tag that is a signed
// schema 1 manifest is served with the upstream's exact bytes and digest
// (the payload's, not the signed body's), by tag and by digest, a client
// library pulls it, and the cached copy verifies when read back from the
// store by another mirror instance with the upstream down.
func TestSchema1SignedManifestServedAsUpstream(t *testing.T) {
	for _, sigs := range []int{1, 2} {
		t.Run(map[int]string{1: "one signature", 2: "two signatures"}[sigs], func(t *testing.T) {
			quay := testenv.QuayLike(t)
			tags := quay.Schema1
			signed, d := testenv.Schema1Image(t, quay.Reg, "legacy/app", "old", 2, sigs)
			tags.Set("legacy/app", "old", signed, d)
			dir := t.TempDir()
			mirror, _ := zooMirror(t, quay, dir)

			for _, ref := range []string{"old", d.String()} {
				for _, accept := range []string{"", acceptFull, "application/vnd.docker.distribution.manifest.v1+prettyjws"} {
					resp := do(t, http.MethodGet, mirror+"/v2/legacy/app/manifests/"+ref, http.Header{"Accept": {accept}})
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("%s (Accept %q): got %d %s, want 200", ref, accept, resp.StatusCode, resp.body)
					}
					if got := resp.Header.Get("Docker-Content-Digest"); got != d.String() {
						t.Errorf("%s: got digest %s, want the upstream's %s", ref, got, d)
					}
					if got := resp.Header.Get("Content-Type"); got != "application/vnd.docker.distribution.manifest.v1+prettyjws" {
						t.Errorf("%s: got Content-Type %s", ref, got)
					}
					if !bytes.Equal(resp.body, signed) {
						t.Errorf("%s: body differs from the upstream's signed manifest", ref)
					}
				}
			}

			desc, err := remote.Get(testenv.Ref(t, mirror, "legacy/app:old"), remote.WithTransport(http.DefaultTransport))
			if err != nil {
				t.Fatal(err)
			}
			img, err := desc.Schema1()
			if err != nil {
				t.Fatal(err)
			}
			layers, err := img.Layers()
			if err != nil || len(layers) != 2 {
				t.Fatalf("got %d layers (%v), want 2", len(layers), err)
			}
			for _, l := range layers {
				if err := validate.Layer(l); err != nil {
					t.Errorf("layer: %v", err)
				}
			}

			quay.Front.SetFault(testenv.FaultDown, "")
			other, _ := zooMirror(t, quay, dir)
			resp := do(t, http.MethodGet, other+"/v2/legacy/app/manifests/"+d.String(), nil)
			if resp.StatusCode != http.StatusOK || !bytes.Equal(resp.body, signed) {
				t.Errorf("from the store, upstream down: got %d, want 200 and the signed bytes", resp.StatusCode)
			}
		})
	}
}
