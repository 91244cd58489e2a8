package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pullthrough/pullthrough/internal/testenv"
)

// The CRI path: crictl asks containerd 2.4's CRI plugin to pull, as kubelet
// does, and containerd's transfer service fetches with the parallel layer
// chunks Bottlerocket configures (8 MiB chunks, 3 downloads at a time,
// under [plugins."io.containerd.transfer.v1.local"]; bottlerocket-core-kit
// PRs #645, #838).
const (
	criChunk     = 8 << 20
	criDownloads = 3
)

// criWays are the ways the image is pulled cold by the CRI path, in report
// order.
var criWays = []struct{ key, label string }{
	{"local", "pullthrough, local server, S3"},
	{"direct", "direct from upstream"},
}

// criPullResult is the cold pulls of imageRef by the CRI path.
type criPullResult struct {
	Layers    int                        `json:"layers"`
	LayerSize int64                      `json:"layerSize"`
	FirstByte map[string][]time.Duration `json:"firstByteNs"` // crictl start to the first byte of a layer
	Total     map[string][]time.Duration `json:"totalNs"`     // crictl start to its exit
	LayerGETs map[string][]int           `json:"layerGets"`   // layer GETs containerd sent (one per chunk)
	Upstream  map[string][]int           `json:"upstreamBlobGets"`
}

// measureCRIPull pulls imageRef cold through each way p.Runs times,
// round-robin, each with a fresh containerd (empty content store) and a
// fresh mirror. containerd reaches the mirror, or the upstream itself,
// through a hosts.toml mirror entry pointing at a recording front, so both
// ways are configured alike and the front sees the first layer byte.
func measureCRIPull(ctx context.Context, t *testing.T, e *benchEnv) criPullResult {
	t.Helper()
	res := criPullResult{Layers: e.p.Layers, LayerSize: e.p.LayerSize, FirstByte: map[string][]time.Duration{},
		Total: map[string][]time.Duration{}, LayerGETs: map[string][]int{}, Upstream: map[string][]int{}}
	layers := e.layerDigests(ctx, t)
	host := e.up.URL.Host
	for run := range e.p.Runs {
		for _, w := range criWays {
			t.Run(fmt.Sprintf("cri-%s-%d", w.key, run+1), func(t *testing.T) {
				inst := e.startDirect(t, run)
				if w.key == "local" {
					inst = e.startLocal(t, 3000+run)
				}
				defer inst.close()
				front := newFirstByteFront(t, inst.base, layers)
				hosts := t.TempDir()
				toml := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", e.up.URL.String(), front.url)
				if err := os.MkdirAll(filepath.Join(hosts, host), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(hosts, host, "hosts.toml"), []byte(toml), 0o644); err != nil {
					t.Fatal(err)
				}
				ctd := testenv.StartContainerdCRI(t, testenv.CRIConfig{ConfigPath: hosts, MaxConcurrentDownloads: criDownloads, ConcurrentLayerFetchBuffer: criChunk})
				e.up.Reset()
				front.start = time.Now()
				out, err := testenv.Crictl(t, ctd, pullTimeout, nil, "pull", host+"/"+imageRef)
				total := time.Since(front.start)
				if err != nil {
					t.Fatalf("crictl pull, %s, run %d: %v\n%s\ncontainerd:\n%s", w.key, run+1, err, out, ctd.Proc.Output())
				}
				first, gets := front.result()
				if gets <= len(layers) {
					t.Errorf("%s: containerd sent %d layer GETs for %d layers, want parallel chunks", w.key, gets, len(layers))
				}
				up := e.up.Count(http.MethodGet, "blob")
				if w.key == "local" && up != len(layers)+1 {
					t.Errorf("local: upstream saw %d blob GETs, want one per blob (%d)", up, len(layers)+1)
				}
				res.FirstByte[w.key] = append(res.FirstByte[w.key], first)
				res.Total[w.key] = append(res.Total[w.key], total)
				res.LayerGETs[w.key] = append(res.LayerGETs[w.key], gets)
				res.Upstream[w.key] = append(res.Upstream[w.key], up)
				t.Logf("cri %-6s run %d: first layer byte %s, total %s, %d layer GETs, %d upstream blob GETs", w.key, run+1, ms(first), secs(total), gets, up)
			})
		}
	}
	return res
}

// layerDigests lists the layers of imageRef, read from the upstream.
func (e *benchEnv) layerDigests(ctx context.Context, t *testing.T) map[string]bool {
	t.Helper()
	ref, err := name.ParseReference(e.reg.Host+"/"+imageRef, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref, remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, l := range m.Layers {
		out[l.Digest.String()] = true
	}
	return out
}

// firstByteFront is a reverse proxy that records when the first byte of a
// layer's body passed through it, and how many layer GETs it forwarded.
type firstByteFront struct {
	url   string
	start time.Time

	layers map[string]bool
	gets   atomic.Int32
	once   sync.Once
	first  atomic.Int64 // nanoseconds after start; 0 until seen
}

func newFirstByteFront(t *testing.T, target string, layers map[string]bool) *firstByteFront {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	f := &firstByteFront{layers: layers}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, dgst, ok := strings.Cut(r.URL.Path, "/blobs/")
		if ok && r.Method == http.MethodGet && f.layers[dgst] {
			f.gets.Add(1)
			w = &firstByteWriter{ResponseWriter: w, seen: func() {
				f.once.Do(func() { f.first.Store(int64(time.Since(f.start))) })
			}}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

// result is the time to the first layer byte and the layer GETs seen.
func (f *firstByteFront) result() (time.Duration, int) {
	return time.Duration(f.first.Load()), int(f.gets.Load())
}

type firstByteWriter struct {
	http.ResponseWriter
	seen func()
}

func (w *firstByteWriter) Write(p []byte) (int, error) {
	if len(p) > 0 {
		w.seen()
	}
	return w.ResponseWriter.Write(p)
}

func (w *firstByteWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
