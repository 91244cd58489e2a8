package main

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestImage runs `make image` twice, into two directories, for this
// machine's architecture, and checks what a user of the image relies on:
// the two layouts are byte-identical; the image runs as a numeric non-root
// user with its state on a volume; and the binary taken out of the layout
// starts with the image's own environment (only the address and the state
// directory moved to where a test may write) and serves a pull through
// itself. With crane installed (make tools), `crane push` of the layout
// must push the same index.
func TestImage(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the image is linux-only and its binary is run here")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dirs := [2]string{t.TempDir(), t.TempDir()}
	for _, d := range dirs {
		start := time.Now()
		cmd := exec.Command("make", "--no-print-directory", "-C", root, "image",
			"IMAGE_DIR="+d, "IMAGE_PLATFORMS=linux/"+runtime.GOARCH)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make image: %v\n%s", err, out)
		}
		t.Logf("make image IMAGE_DIR=%s: %s in %s", d, strings.TrimSpace(string(out)), time.Since(start).Round(time.Millisecond))
	}
	a, b := filepath.Join(dirs[0], "oci"), filepath.Join(dirs[1], "oci")
	t.Run("reproducible", func(t *testing.T) {
		fa, fb := files(t, a), files(t, b)
		if len(fa) == 0 {
			t.Fatal("empty layout")
		}
		for p, ca := range fa {
			if cb, ok := fb[p]; !ok {
				t.Errorf("%s: in the first build only", p)
			} else if !bytes.Equal(ca, cb) {
				t.Errorf("%s: differs between the two builds", p)
			}
		}
		for p := range fb {
			if _, ok := fa[p]; !ok {
				t.Errorf("%s: in the second build only", p)
			}
		}
	})

	img := platformImage(t, a)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	rootfs := layerFiles(t, img)
	t.Run("config", func(t *testing.T) {
		var u, g int
		if _, err := fmt.Sscanf(cf.Config.User, "%d:%d", &u, &g); err != nil || u == 0 || g == 0 {
			t.Errorf("User = %q, want a numeric non-root uid:gid", cf.Config.User)
		}
		if got := cf.Config.Entrypoint; len(got) != 1 || got[0] != binaryPath {
			t.Errorf("Entrypoint = %q, want [%s]", got, binaryPath)
		}
		if _, ok := cf.Config.Volumes[stateDir]; !ok {
			t.Errorf("Volumes = %v, want %s (the store, on a read-only root)", cf.Config.Volumes, stateDir)
		}
		for _, want := range []string{"PULLTHROUGH_ADDR=0.0.0.0:5000", "PULLTHROUGH_STORE=file://" + stateDir + "/store"} {
			if !slices.Contains(cf.Config.Env, want) {
				t.Errorf("Env = %q, want %s in it", cf.Config.Env, want)
			}
		}
		if !cf.Created.Time.Equal(time.Unix(sourceDateEpoch(t, root), 0)) {
			t.Errorf("Created = %s, want the commit time (SOURCE_DATE_EPOCH)", cf.Created.Time)
		}
		st, ok := rootfs[strings.TrimPrefix(stateDir, "/")]
		if !ok || st.Uid != u || st.Typeflag != tar.TypeDir {
			t.Errorf("%s in the layer: %+v, want a directory owned by uid %d", stateDir, st, u)
		}
		for p, h := range rootfs {
			if h.Mode&(04000|02000) != 0 {
				t.Errorf("%s: set-id bit in mode %o", p, h.Mode)
			}
		}
		pool := x509.NewCertPool()
		if ca, ok := rootfs[strings.TrimPrefix(caBundlePath, "/")]; !ok || !pool.AppendCertsFromPEM(ca.contents) || len(pool.Subjects()) < 100 {
			t.Errorf("%s: want a PEM bundle of the public roots, for HTTPS upstreams", caBundlePath)
		}
	})

	t.Run("runs", func(t *testing.T) {
		bin, ok := rootfs[strings.TrimPrefix(binaryPath, "/")]
		if !ok {
			t.Fatalf("no %s in the image", binaryPath)
		}
		exe := filepath.Join(t.TempDir(), "pullthrough")
		if err := os.WriteFile(exe, bin.contents, 0o755); err != nil {
			t.Fatal(err)
		}
		upstream := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
		t.Cleanup(upstream.Close)
		up, err := random.Image(1024, 2)
		if err != nil {
			t.Fatal(err)
		}
		upRef, _ := name.ParseReference(strings.TrimPrefix(upstream.URL, "http://") + "/team/app:1.0")
		if err := remote.Write(upRef, up); err != nil {
			t.Fatal(err)
		}

		state := t.TempDir()
		addr := freeAddr(t)
		env := []string{"PULLTHROUGH_UPSTREAM=" + upstream.URL}
		for _, kv := range cf.Config.Env {
			k, _, _ := strings.Cut(kv, "=")
			switch k {
			case "PULLTHROUGH_ADDR":
				kv = "PULLTHROUGH_ADDR=" + addr
			case "PULLTHROUGH_STORE":
				kv = "PULLTHROUGH_STORE=file://" + filepath.Join(state, "store")
			case "TMPDIR", "HOME":
				kv = k + "=" + state
			}
			env = append(env, kv)
		}
		cmd := exec.Command(exe)
		cmd.Env, cmd.Dir = env, state
		var logs bytes.Buffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Signal(os.Interrupt)
			cmd.Wait()
			if t.Failed() {
				t.Logf("server log:\n%s", logs.String())
			}
		})
		waitV2(t, "http://"+addr+"/v2/")
		ref, _ := name.ParseReference(addr + "/team/app:1.0")
		got, err := remote.Image(ref)
		if err != nil {
			t.Fatalf("pull through the image's binary: %v", err)
		}
		gd, _ := got.Digest()
		wd, _ := up.Digest()
		if gd != wd {
			t.Fatalf("pulled %s, want %s", gd, wd)
		}
		layers, _ := got.Layers()
		for _, l := range layers {
			rc, err := l.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				t.Fatalf("layer through the mirror: %v", err)
			}
			rc.Close()
		}
	})

	t.Run("crane push", func(t *testing.T) {
		crane := tool("crane")
		if crane == "" {
			t.Skip("crane is not installed (make tools installs it)")
		}
		reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
		t.Cleanup(reg.Close)
		dst := strings.TrimPrefix(reg.URL, "http://") + "/pullthrough:test"
		// The command README gives.
		if out, err := exec.Command(crane, "push", "--insecure", a, dst).CombinedOutput(); err != nil {
			t.Fatalf("crane push: %v\n%s", err, out)
		}
		ref, _ := name.ParseReference(dst)
		pushed, err := remote.Index(ref)
		if err != nil {
			t.Fatal(err)
		}
		pd, _ := pushed.Digest()
		_, want := layoutIndex(t, a)
		if pd != want {
			t.Errorf("pushed %s, want the layout's index %s", pd, want)
		}
	})
}

type file struct {
	*tar.Header
	contents []byte
}

// files reads every regular file under dir by its relative path.
func files(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// layoutIndex is the one entry of the layout's index.json (crane push takes
// one without --index): the multi-platform image index.
func layoutIndex(t *testing.T, dir string) (v1.ImageIndex, v1.Hash) {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 {
		t.Fatalf("index.json has %d entries, want 1", len(m.Manifests))
	}
	idx, err := top.ImageIndex(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return idx, m.Manifests[0].Digest
}

// platformImage is this machine's image in the layout at dir.
func platformImage(t *testing.T, dir string) v1.Image {
	t.Helper()
	idx, _ := layoutIndex(t, dir)
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range m.Manifests {
		if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == runtime.GOARCH {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("no linux/%s image in %s", runtime.GOARCH, dir)
	return nil
}

// layerFiles is the image's flattened file system, headers and contents,
// by path without a leading or trailing slash.
func layerFiles(t *testing.T, img v1.Image) map[string]file {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	out := map[string]file{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(strings.TrimPrefix(h.Name, "/"), "/")] = file{h, b}
	}
}

func sourceDateEpoch(t *testing.T, root string) int64 {
	t.Helper()
	out, err := exec.Command("git", "-C", root, "log", "-1", "--format=%ct").Output()
	if err != nil {
		t.Skipf("no git history to take SOURCE_DATE_EPOCH from: %v", err)
	}
	var s int64
	fmt.Sscan(string(out), &s)
	return s
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitV2(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v, want 200", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tool finds a pinned tool in the cache make tools fills, then on PATH.
func tool(name string) string {
	dir := os.Getenv("PULLTHROUGH_TOOLS")
	if dir == "" {
		if home, err := os.UserHomeDir(); err == nil {
			dir = filepath.Join(home, ".cache", "pullthrough", "tools")
		}
	}
	if p := filepath.Join(dir, "bin", name); dir != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, _ := exec.LookPath(name)
	return p
}
