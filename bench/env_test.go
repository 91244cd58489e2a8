package bench

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/pullthrough/pullthrough/internal/testenv"
)

const (
	mib = 1 << 20
	gib = 1 << 30

	imageRef = "bench/app:1"
	indexRef = "bench/multi:1"
	bigRepo  = "bench/big"
	smallRep = "bench/small"
)

// params are the benchmark's sizes and repetitions. BENCH_SCALE shrinks
// (or grows) every byte count; BENCH_RUNS and BENCH_COLD_STARTS set the
// repetitions. BENCH_ONLY (sections: pulls, small, cri, fill, parallel, coldstart) and
// BENCH_CONTENDERS (keys, e.g. local,direct) narrow a run to what is being
// compared; both default to everything. BENCH_BASE=<git commit> adds the
// local server built from that commit as contender local-base.
type params struct {
	Scale          float64  `json:"scale"`
	Runs           int      `json:"runs"`
	ColdStarts     int      `json:"coldStarts"`
	Layers         int      `json:"layers"`
	LayerSize      int64    `json:"layerSize"`
	IndexPlatforms int      `json:"indexPlatforms"`
	IndexLayers    int      `json:"indexLayers"`
	IndexLayerSize int64    `json:"indexLayerSize"`
	SmallLayerSize int64    `json:"smallLayerSize"`
	BigBlob        int64    `json:"bigBlob"`
	SmallBlob      int64    `json:"smallBlob"`
	PullParallel   int      `json:"pullParallel"`
	Only           []string `json:"only,omitempty"`
	Contenders     []string `json:"contenders,omitempty"`
}

// runs reports whether the section is part of this run.
func (p params) runs(section string) bool {
	return len(p.Only) == 0 || slices.Contains(p.Only, section)
}

// listEnv is a comma-separated environment variable whose items must all
// be in known; nil when unset.
func listEnv(t *testing.T, name string, known ...string) []string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return nil
	}
	items := strings.Split(v, ",")
	for _, it := range items {
		if !slices.Contains(known, it) {
			t.Fatalf("%s: got %q, want a comma-separated list of %s", name, it, strings.Join(known, ", "))
		}
	}
	return items
}

func loadParams(t *testing.T) params {
	t.Helper()
	p := params{Scale: 1, Runs: 5, ColdStarts: 7, Layers: 8, IndexPlatforms: 2, IndexLayers: 3, SmallBlob: 10 * mib, PullParallel: 3}
	if v := os.Getenv("BENCH_SCALE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 || f > 4 || math.IsNaN(f) {
			t.Fatalf("BENCH_SCALE: want a number in (0, 4], got %q", v)
		}
		p.Scale = f
	}
	for _, v := range []struct {
		name     string
		dst      *int
		min, max int
	}{{"BENCH_RUNS", &p.Runs, 1, 20}, {"BENCH_COLD_STARTS", &p.ColdStarts, 1, 50}} {
		if s := os.Getenv(v.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < v.min || n > v.max {
				t.Fatalf("%s: want an integer in [%d, %d], got %q", v.name, v.min, v.max, s)
			}
			*v.dst = n
		}
	}
	p.Only = listEnv(t, "BENCH_ONLY", "pulls", "small", "cri", "fill", "parallel", "coldstart")
	p.Contenders = listEnv(t, "BENCH_CONTENDERS", "local", "local-fs", "local-base", "lambda", "distribution", "direct")
	scaled := func(n int64, floor int64) int64 { return max(int64(float64(n)*p.Scale), floor) }
	p.LayerSize = scaled(25*mib, 64<<10)
	p.IndexLayerSize = scaled(4*mib, 16<<10)
	p.SmallLayerSize = min(scaled(smallLayerSize, 16<<10), smallLayerSize)
	p.BigBlob = scaled(gib, 2*p.SmallBlob)
	return p
}

// benchEnv is what every contender shares: one upstream registry (the
// distribution binary over its filesystem) behind a counting wrapper, one
// versitygw server, and the content seeded into the upstream.
type benchEnv struct {
	p      params
	reg    *url.URL // the upstream registry itself, for seeding
	up     *testenv.Upstream
	s3     *testenv.S3Server
	local  string // pullthrough binary (local server)
	lambda string // pullthrough bootstrap (Lambda)
	base   string // local server built from BENCH_BASE; "" without
	fsRoot string // filesystem stores of the local-fs contender

	imageDigest      v1.Hash
	indexDigest      v1.Hash
	smallImageDigest v1.Hash
	bigDigest        string
	smallDigest      string
}

func newBenchEnv(t *testing.T, p params) *benchEnv {
	t.Helper()
	e := &benchEnv{p: p, fsRoot: t.TempDir()}
	e.reg = testenv.DistributionRegistry(t)
	e.up = testenv.NewUpstream(t, e.reg)
	e.s3 = testenv.StartS3(t)
	e.local = testenv.BuildMirror(t, false)
	e.lambda = testenv.BuildMirror(t, true)
	if ref := baseRef(); ref != "" {
		e.base = buildBase(t, ref)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rng := rand.NewChaCha8([32]byte{'p', 't'})

	img := randomImage(t, rng, p.Layers, p.LayerSize)
	e.imageDigest = push(ctx, t, e.reg, imageRef, img)
	e.smallImageDigest = push(ctx, t, e.reg, smallRef, randomImage(t, rng, p.Layers, p.SmallLayerSize))

	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	// WriteIndex pushes the platform images too.
	for _, arch := range []string{"amd64", "arm64", "ppc64le", "s390x"}[:p.IndexPlatforms] {
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        randomImage(t, rng, p.IndexLayers, p.IndexLayerSize),
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	ref, err := name.ParseReference(e.reg.Host+"/"+indexRef, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx, remote.WithContext(ctx)); err != nil {
		t.Fatalf("seed %s: %v", indexRef, err)
	}
	e.indexDigest, _ = idx.Digest()

	e.bigDigest = pushBlob(ctx, t, e.reg, bigRepo, p.BigBlob, 1)
	e.smallDigest = pushBlob(ctx, t, e.reg, smallRep, p.SmallBlob, 2)
	return e
}

// mirrorEnv is the environment of a pullthrough process storing under
// prefix and talking to S3 at endpoint (the S3 server or a counter in
// front of it). Everything else is the product's default.
func (e *benchEnv) mirrorEnv(endpoint, prefix string) []string {
	return append(e.s3.Env(prefix),
		"AWS_ENDPOINT_URL_S3="+endpoint,
		"PULLTHROUGH_UPSTREAM="+e.up.URL.String(),
	)
}

// randomImage is an OCI image of n layers, each a gzip member holding a tar
// with one file of size random bytes. The gzip is stored, not deflated:
// random bytes do not compress, and seeding stays fast.
func randomImage(t *testing.T, rng io.Reader, n int, size int64) v1.Image {
	t.Helper()
	layers := make([]v1.Layer, 0, n)
	for i := range n {
		var buf bytes.Buffer
		gz, _ := gzip.NewWriterLevel(&buf, gzip.NoCompression)
		tw := tar.NewWriter(gz)
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("layer-%d.bin", i), Size: size, Mode: 0o644, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.CopyN(tw, rng, size); err != nil {
			t.Fatal(err)
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		if err := gz.Close(); err != nil {
			t.Fatal(err)
		}
		b := buf.Bytes()
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
			tarball.WithMediaType(types.OCILayer))
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func push(ctx context.Context, t *testing.T, reg *url.URL, refStr string, img v1.Image) v1.Hash {
	t.Helper()
	ref, err := name.ParseReference(reg.Host+"/"+refStr, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		t.Fatalf("seed %s: %v", refStr, err)
	}
	d, _ := img.Digest()
	return d
}

// pushBlob streams size pseudo-random bytes into repo as one blob (POST,
// PATCH, PUT) without holding them in memory, and returns the digest.
func pushBlob(ctx context.Context, t *testing.T, reg *url.URL, repo string, size int64, seed byte) string {
	t.Helper()
	base := reg.String() + "/v2/" + repo + "/blobs/uploads/"
	do := func(method, u string, body io.Reader, n int64, want int) string {
		req, err := http.NewRequestWithContext(ctx, method, u, body)
		if err != nil {
			t.Fatal(err)
		}
		if body != nil {
			req.ContentLength = n
			req.Header.Set("Content-Type", "application/octet-stream")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("push blob %s: %s: %v", repo, method, err)
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		if resp.StatusCode != want {
			t.Fatalf("push blob %s: %s: got %d %s, want %d", repo, method, resp.StatusCode, msg, want)
		}
		loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
		if err != nil {
			t.Fatalf("push blob %s: %s: Location: %v", repo, method, err)
		}
		return loc.String()
	}
	loc := do(http.MethodPost, base, nil, 0, http.StatusAccepted)
	h := sha256.New()
	src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{seed}), size), h)
	loc = do(http.MethodPatch, loc, src, size, http.StatusAccepted)
	dgst := "sha256:" + hex.EncodeToString(h.Sum(nil))
	u, _ := url.Parse(loc)
	q := u.Query()
	q.Set("digest", dgst)
	u.RawQuery = q.Encode()
	do(http.MethodPut, u.String(), nil, 0, http.StatusCreated)
	return dgst
}
