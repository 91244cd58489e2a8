// Command image assembles the local server's OCI image from binaries built
// beforehand (make image), with go-containerregistry and nothing else: no
// Docker, no base image, no network. It writes an OCI image layout
// directory whose index.json holds one entry, the multi-platform image
// index, so that `crane push <dir> <ref>` pushes it as it is.
//
// The output is byte-identical for the same binaries, version and
// SOURCE_DATE_EPOCH (https://reproducible-builds.org/specs/source-date-epoch/):
// every file time in the layer and the image's created time are the epoch,
// owners are numeric, entries are sorted, and the gzip header carries no
// time (go-containerregistry's compression leaves it zero).
//
// It is a build tool, not part of the mirror: it lives in its own module so
// that the mirror's dependencies stay what the mirror uses.
package main

import (
	"archive/tar"
	"bytes"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// What the image runs as and where it keeps state. The root file system can
// be mounted read-only: everything written goes under stateDir, a volume.
const (
	// uid and gid 65532 are distroless's "nonroot"; any unprivileged number
	// works, it only has to own stateDir in the layer.
	uid        = 65532
	gid        = 65532
	binaryPath = "/usr/local/bin/pullthrough"
	stateDir   = "/var/cache/pullthrough"
	// The path Go's crypto/x509 reads first on Linux (root_linux.go).
	caBundlePath = "/etc/ssl/certs/ca-certificates.crt"
	port         = "5000"
)

// env is the image's configuration. The store and the spool (TMPDIR, which
// PULLTHROUGH_SPOOL_DIR defaults to) live on the volume; the server listens
// on every interface, as a container's loopback is its own.
// PULLTHROUGH_HOSTS stays at the binary's default (localhost and IP
// literals): a deployment that clients reach by name must set it.
var env = []string{
	"PULLTHROUGH_ADDR=0.0.0.0:" + port,
	"PULLTHROUGH_STORE=file://" + stateDir + "/store",
	"TMPDIR=" + stateDir,
	"HOME=" + stateDir,
}

type options struct {
	out      string
	version  string
	epoch    time.Time
	binaries map[string]string // platform (os/arch) → path of the binary
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	out := fs.String("out", "build/image/oci", "OCI layout directory to write (replaced)")
	version := fs.String("version", "dev", "version for the image's labels and the layout's ref.name")
	epoch := fs.String("epoch", os.Getenv("SOURCE_DATE_EPOCH"), "timestamp of every file and of the image (Unix seconds)")
	var bins []string
	fs.Func("binary", "os/arch=path of a linux binary (repeatable)", func(v string) error { bins = append(bins, v); return nil })
	if err := fs.Parse(args); err != nil {
		return err
	}
	o := options{out: *out, version: *version, binaries: map[string]string{}}
	secs, err := strconv.ParseInt(*epoch, 10, 64)
	if err != nil {
		return fmt.Errorf("-epoch (or SOURCE_DATE_EPOCH): want Unix seconds, got %q", *epoch)
	}
	o.epoch = time.Unix(secs, 0).UTC()
	for _, b := range bins {
		platform, p, ok := strings.Cut(b, "=")
		if !ok || !strings.HasPrefix(platform, "linux/") {
			return fmt.Errorf("-binary: want linux/<arch>=<path>, got %q", b)
		}
		o.binaries[platform] = p
	}
	if len(o.binaries) == 0 {
		return errors.New("no -binary given")
	}
	idx, err := build(o)
	if err != nil {
		return err
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s: %s\n", o.out, d)
	return nil
}

// build writes the layout and returns the image index it holds.
func build(o options) (v1.ImageIndex, error) {
	platforms := make([]string, 0, len(o.binaries))
	for p := range o.binaries {
		platforms = append(platforms, p)
	}
	sort.Strings(platforms)
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, platform := range platforms {
		img, err := image(o, platform)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", platform, err)
		}
		arch := strings.TrimPrefix(platform, "linux/")
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	if err := os.RemoveAll(o.out); err != nil {
		return nil, err
	}
	p, err := layout.Write(o.out, empty.Index)
	if err != nil {
		return nil, err
	}
	// ref.name is how `crane push` and skopeo's oci: transport name an entry.
	err = p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": o.version}))
	return idx, err
}

// image is one platform's image: a single layer on nothing.
func image(o options, platform string) (v1.Image, error) {
	bin, err := os.ReadFile(o.binaries[platform])
	if err != nil {
		return nil, err
	}
	tarBytes, err := rootfs(bin, o.epoch)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: o.epoch},
			CreatedBy: "packaging/image (make image)",
			Comment:   "pullthrough " + o.version,
		},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", strings.TrimPrefix(platform, "linux/")
	cf.Created = v1.Time{Time: o.epoch}
	cf.Config = v1.Config{
		User:         fmt.Sprintf("%d:%d", uid, gid),
		Entrypoint:   []string{binaryPath},
		Env:          env,
		WorkingDir:   stateDir,
		ExposedPorts: map[string]struct{}{port + "/tcp": {}},
		Volumes:      map[string]struct{}{stateDir: {}},
		StopSignal:   "SIGTERM", // the server shuts down gracefully on it
		Labels: map[string]string{
			"org.opencontainers.image.title":       "pullthrough",
			"org.opencontainers.image.description": "Pull-through cache for container registries (local server)",
			"org.opencontainers.image.version":     o.version,
			"org.opencontainers.image.licenses":    "Apache-2.0",
			"org.opencontainers.image.created":     o.epoch.Format(time.RFC3339),
		},
	}
	return mutate.ConfigFile(img, cf)
}

// rootfs is the layer's tar: the binary, a CA bundle for HTTPS upstreams,
// /etc/passwd and /etc/group naming the user (for tools that print it), and
// the state directory owned by that user (a named volume starts as a copy of
// it, so it is writable), plus /tmp.
func rootfs(bin []byte, epoch time.Time) ([]byte, error) {
	ca, err := caBundle()
	if err != nil {
		return nil, err
	}
	type entry struct {
		name     string
		mode     int64
		owner    int
		dir      bool
		contents []byte
	}
	entries := []entry{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/group", mode: 0o644, contents: fmt.Appendf(nil, "root:x:0:\nnonroot:x:%d:\n", gid)},
		{name: "etc/passwd", mode: 0o644, contents: fmt.Appendf(nil, "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:%s:/sbin/nologin\n", uid, gid, stateDir)},
		{name: "etc/ssl/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/", mode: 0o755, dir: true},
		{name: strings.TrimPrefix(caBundlePath, "/"), mode: 0o644, contents: ca},
		{name: "tmp/", mode: 0o1777, dir: true},
		{name: "usr/", mode: 0o755, dir: true},
		{name: "usr/local/", mode: 0o755, dir: true},
		{name: "usr/local/bin/", mode: 0o755, dir: true},
		{name: strings.TrimPrefix(binaryPath, "/"), mode: 0o755, contents: bin},
		{name: "var/", mode: 0o755, dir: true},
		{name: "var/cache/", mode: 0o755, dir: true},
		{name: strings.TrimPrefix(stateDir, "/") + "/", mode: 0o700, owner: uid, dir: true},
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name:    e.name,
			Mode:    e.mode,
			Uid:     e.owner,
			Gid:     e.owner,
			ModTime: epoch,
			Format:  tar.FormatPAX,
		}
		if e.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.contents))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.contents); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// caBundle is Mozilla's NSS roots as Go's x509roots/fallback module pins
// them, PEM-encoded, so that the image's trust store comes from go.sum and
// not from whichever machine built it. Roots with a distrust-after
// constraint are left out: a PEM bundle cannot carry the constraint.
func caBundle() ([]byte, error) {
	var b bytes.Buffer
	for r := range bundle.Roots() {
		if r.Constraint != nil {
			continue
		}
		if err := pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate}); err != nil {
			return nil, err
		}
	}
	if b.Len() == 0 {
		return nil, errors.New("empty CA bundle")
	}
	return b.Bytes(), nil
}
