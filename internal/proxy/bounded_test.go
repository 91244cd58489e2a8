package proxy_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullthrough/pullthrough/internal/cache"
	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// pushManifestOf pushes to reg, as repo:tag, an OCI image manifest that
// lists layers as its layers (digests of blobs that need not exist: a
// registry that does not check, or a hostile one, serves such a manifest).
func pushManifestOf(t *testing.T, reg *url.URL, repo, tag string, layers []digest.Digest) []byte {
	t.Helper()
	type desc struct {
		MediaType string        `json:"mediaType"`
		Digest    digest.Digest `json:"digest"`
		Size      int64         `json:"size"`
	}
	m := struct {
		SchemaVersion int    `json:"schemaVersion"`
		MediaType     string `json:"mediaType"`
		Config        desc   `json:"config"`
		Layers        []desc `json:"layers"`
	}{2, "application/vnd.oci.image.manifest.v1+json", desc{"application/vnd.oci.image.config.v1+json", digest.FromString("config " + tag), 2}, nil}
	for _, d := range layers {
		m.Layers = append(m.Layers, desc{"application/vnd.oci.image.layer.v1.tar+gzip", d, 1})
	}
	body, _ := json.Marshal(m)
	req, _ := http.NewRequest(http.MethodPut, reg.String()+"/v2/"+repo+"/manifests/"+tag, bytes.NewReader(body))
	req.Header.Set("Content-Type", m.MediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("push %d-layer manifest: got %d, want 201", len(layers), resp.StatusCode)
	}
	return body
}

func randomDigests(n int) []digest.Digest {
	out := make([]digest.Digest, n)
	for i := range out {
		b := make([]byte, 16)
		rand.Read(b)
		out[i] = digest.FromBytes(b)
	}
	return out
}

// storePUTs is the number of object writes a counting S3 front saw.
func storePUTs(front *testenv.Upstream) int {
	n := 0
	for _, kind := range []string{"blob", "manifest", "tags", "referrers", "other"} {
		n += front.Count(http.MethodPut, kind)
	}
	return n
}

// TestManifestStoreWritesAreBounded: the upstream (a registry that stores
// any manifest, standing in for a hostile or careless one) serves
// manifests that reference many digests. One manifest GET writes at most
// the manifest, its tag and cache.MaxLinks links, and a manifest over
// cache.MaxManifestRefs distinct references is answered 403 DENIED naming
// the cap, with nothing stored (it used to cost one PUT per reference,
// one after another: 27,000 for a 27,000-layer manifest).
func TestManifestStoreWritesAreBounded(t *testing.T) {
	st, front := countedS3(t)
	_, base, _, reg := mirrorOn(t, st, proxy.Config{ManifestTTL: time.Hour, MaxManifestSize: 4 << 20}, nil)
	one := randomDigests(1)[0]
	for _, tc := range []struct {
		name       string
		layers     []digest.Digest
		wantStatus int
		maxPUTs    int
	}{
		{"at the cap", randomDigests(cache.MaxManifestRefs - 1), http.StatusOK, 2 + cache.MaxLinks},
		{"one over the cap", randomDigests(cache.MaxManifestRefs), http.StatusForbidden, 0},
		{"27,000 layers (3.5 MB)", randomDigests(27000), http.StatusForbidden, 0},
		{"one layer listed 5,000 times", func() []digest.Digest {
			out := make([]digest.Digest, 5000)
			for i := range out {
				out[i] = one
			}
			return out
		}(), http.StatusOK, 2 + 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tag := fmt.Sprintf("n%d", len(tc.layers))
			pushManifestOf(t, reg, "org/wide", tag, tc.layers)
			front.Reset()
			began := time.Now()
			resp := do(t, http.MethodGet, base+"/v2/org/wide/manifests/"+tag, nil)
			took := time.Since(began)
			puts := storePUTs(front)
			t.Logf("%d layers: %d in %s, %d store PUTs", len(tc.layers), resp.StatusCode, took.Round(time.Millisecond), puts)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("got %d %.200s, want %d", resp.StatusCode, resp.body, tc.wantStatus)
			}
			if tc.wantStatus == http.StatusForbidden {
				if want := fmt.Sprintf("at most %d", cache.MaxManifestRefs); !strings.Contains(string(resp.body), "DENIED") || !strings.Contains(string(resp.body), want) {
					t.Errorf("got body %s, want DENIED saying %q", resp.body, want)
				}
			}
			if puts > tc.maxPUTs {
				t.Errorf("got %d store PUTs for one manifest GET, want at most %d", puts, tc.maxPUTs)
			}
		})
	}
}
