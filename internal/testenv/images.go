package testenv

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// SeedImage pushes a random image of layers×layerSize bytes to reg as
// repo:tag and returns it.
func SeedImage(t testing.TB, reg *url.URL, repoTag string, layerSize, layers int64) v1.Image {
	t.Helper()
	img, err := random.Image(layerSize, layers)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(reg.Host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("seed %s: %v", repoTag, err)
	}
	return img
}

// SeedIndex pushes a random multi-platform index with count images.
func SeedIndex(t testing.TB, reg *url.URL, repoTag string, layerSize, layers, count int64) v1.ImageIndex {
	t.Helper()
	idx, err := random.Index(layerSize, layers, count)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(reg.Host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatalf("seed %s: %v", repoTag, err)
	}
	return idx
}

// Ref parses host/repo:tag against a plain-http mirror.
func Ref(t testing.TB, base, repoRef string) name.Reference {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(u.Host+"/"+repoRef, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// PullImage pulls an image through a mirror with a real client library and
// verifies every blob's digest and size. It returns the manifest digest.
func PullImage(t testing.TB, base, repoRef string, opts ...remote.Option) v1.Hash {
	t.Helper()
	d, err := Pull(base, repoRef, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Pull is PullImage for goroutines: it reports instead of failing the test.
func Pull(base, repoRef string, opts ...remote.Option) (v1.Hash, error) {
	u, err := url.Parse(base)
	if err != nil {
		return v1.Hash{}, err
	}
	ref, err := name.ParseReference(u.Host+"/"+repoRef, name.Insecure)
	if err != nil {
		return v1.Hash{}, err
	}
	opts = append([]remote.Option{remote.WithTransport(http.DefaultTransport)}, opts...)
	img, err := remote.Image(ref, opts...)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("pull %s from %s: %w", repoRef, base, err)
	}
	// Fast skips layer contents; every layer is then read and verified in full.
	if err := validate.Image(img, validate.Fast); err != nil {
		return v1.Hash{}, fmt.Errorf("pull %s: validate: %w", repoRef, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return v1.Hash{}, err
	}
	for _, l := range layers {
		if err := validate.Layer(l); err != nil {
			return v1.Hash{}, fmt.Errorf("pull %s: layer: %w", repoRef, err)
		}
	}
	return img.Digest()
}

// PullIndex pulls every image of an index through a mirror and verifies
// it. It returns the index digest.
func PullIndex(t testing.TB, base, repoRef string) v1.Hash {
	t.Helper()
	idx, err := remote.Index(Ref(t, base, repoRef), remote.WithTransport(http.DefaultTransport))
	if err != nil {
		t.Fatalf("pull index %s: %v", repoRef, err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("pull index %s: validate: %v", repoRef, err)
	}
	d, _ := idx.Digest()
	return d
}
