package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/pullthrough/pullthrough/internal/cache"
	"github.com/pullthrough/pullthrough/internal/oci"
)

// warmPath is the pre-warm endpoint. It is outside /v2/ and answers only
// when client credentials are configured: it makes the mirror pull on the
// caller's behalf.
const warmPath = "/_pullthrough/warm"

type warmRequest struct {
	Image     string   `json:"image"`
	Platforms []string `json:"platforms"`
}

func (p *Proxy) serveWarm(w http.ResponseWriter, r *http.Request) error {
	if !p.access.requiresCredentials() {
		return oci.ErrNotFound.With("the warm endpoint is enabled only with PULLTHROUGH_CLIENT_TOKENS or PULLTHROUGH_CLIENT_USERS", nil)
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		return oci.ErrUnsupported.With("POST a JSON body {\"image\": \"...\", \"platforms\": [\"linux/amd64\"]}", nil)
	}
	var req warmRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || req.Image == "" {
		return oci.ErrQueryInvalid.With("want a JSON body {\"image\": \"...\", \"platforms\": [...]}", nil)
	}
	// Validate before answering 200, so bad input gets a real status.
	if _, err := p.warmRoute(req.Image); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	pw := &flushWriter{w: w}
	if err := p.Warm(r.Context(), req.Image, req.Platforms, pw); err != nil {
		fmt.Fprintf(pw, "error: %s\n", oci.From(err).Message)
		return nil
	}
	fmt.Fprintln(pw, "done")
	return nil
}

type flushWriter struct{ w http.ResponseWriter }

func (f *flushWriter) Write(b []byte) (int, error) {
	n, err := f.w.Write(b)
	http.NewResponseController(f.w).Flush()
	return n, err
}

// warmRoute turns an image reference into a bound manifest route.
func (p *Proxy) warmRoute(image string) (route, error) {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return route{}, oci.ErrNameInvalid.With(fmt.Sprintf("invalid image reference %q", oci.Truncate(image)), nil)
	}
	up, ok := p.lookup(reference.Domain(named))
	if !ok {
		return route{}, oci.ErrNameUnknown.With(fmt.Sprintf("registry %q is not served by this mirror", reference.Domain(named)), nil)
	}
	rt := route{kind: routeManifest, name: reference.Path(named), tag: "latest"}
	if d, ok := named.(reference.Digested); ok {
		rt.digest, rt.tag = d.Digest(), ""
	} else if t, ok := named.(reference.Tagged); ok {
		rt.tag = t.Tag()
	}
	return rt, bind(&rt, up)
}

// Warm pulls an image into the cache ahead of a rollout: its manifests and
// every blob of the chosen platforms ("linux/amd64", "linux/arm64/v8"; none
// means all). It writes one line of progress per step.
func (p *Proxy) Warm(ctx context.Context, image string, platforms []string, progress io.Writer) error {
	rt, err := p.warmRoute(image)
	if err != nil {
		return err
	}
	m, _, err := p.manifest(ctx, rt, fullAccept)
	if err != nil {
		return err
	}
	fmt.Fprintf(progress, "manifest %s %s\n", m.Digest, m.MediaType)
	images := []cache.Manifest{m}
	if oci.IsIndex(m.MediaType) {
		if images, err = p.warmIndex(ctx, rt, m, platforms, progress); err != nil {
			return err
		}
	}
	for _, im := range images {
		if err := p.warmImage(ctx, rt, im, progress); err != nil {
			return err
		}
	}
	return nil
}

// warmIndex fetches the images of an index (an OCI index or a Docker
// manifest list) for the chosen platforms.
func (p *Proxy) warmIndex(ctx context.Context, rt route, m cache.Manifest, platforms []string, progress io.Writer) ([]cache.Manifest, error) {
	var idx ocispec.Index
	if err := oci.DecodeSpec(m.Data, &idx); err != nil {
		return nil, oci.ErrManifestInvalid.With("index unreadable", err)
	}
	var images []cache.Manifest
	for _, d := range idx.Manifests {
		plat := ""
		if d.Platform != nil {
			plat = strings.TrimSuffix(d.Platform.OS+"/"+d.Platform.Architecture+"/"+d.Platform.Variant, "/")
		}
		if !platformWanted(plat, platforms) {
			continue
		}
		// decodeSpec leaves a wrong-typed digest empty, which would be
		// read as the tag "".
		if err := d.Digest.Validate(); err != nil {
			return nil, oci.ErrManifestInvalid.With("index names an invalid digest", err)
		}
		child := route{kind: routeManifest, name: rt.name, digest: d.Digest, up: rt.up}
		cm, _, err := p.manifest(ctx, child, fullAccept)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(progress, "manifest %s %s\n", cm.Digest, plat)
		images = append(images, cm)
	}
	if len(images) == 0 {
		return nil, oci.ErrManifestUnknown.With(fmt.Sprintf("no image for platforms %v", platforms), nil)
	}
	return images, nil
}

// warmImage fills an image's config and layers, in that order.
func (p *Proxy) warmImage(ctx context.Context, rt route, im cache.Manifest, progress io.Writer) error {
	var doc ocispec.Manifest
	if err := oci.DecodeSpec(im.Data, &doc); err != nil {
		return oci.ErrManifestInvalid.With("manifest unreadable", err)
	}
	blobs := []digest.Digest{doc.Config.Digest}
	for _, l := range doc.Layers {
		blobs = append(blobs, l.Digest)
	}
	for _, d := range blobs {
		if err := d.Validate(); err != nil {
			return oci.ErrManifestInvalid.With("manifest names an invalid digest", err)
		}
		if err := p.warmBlob(ctx, route{kind: routeBlob, name: rt.name, digest: d, up: rt.up}, progress); err != nil {
			return err
		}
	}
	return nil
}

// warmBlob fills one blob unless the cache has it.
func (p *Proxy) warmBlob(ctx context.Context, br route, progress io.Writer) error {
	d := br.digest
	start := p.now()
	if size, err := p.store.Stat(ctx, cache.BlobKey(d)); err == nil {
		fmt.Fprintf(progress, "blob %s %d bytes cached\n", d, size)
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return oci.ErrUnavailable.With("cache storage unavailable", err)
	}
	size, handedOff, err := p.fills.Warm(ctx, fillBlob(br))
	switch {
	case err != nil:
		return fromUpstream(err, oci.ErrBlobUnknown)
	case handedOff:
		fmt.Fprintf(progress, "blob %s %d bytes filling in the background\n", d, size)
	default:
		fmt.Fprintf(progress, "blob %s %d bytes filled in %s\n", d, size, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

func platformWanted(plat string, want []string) bool {
	if len(want) == 0 {
		return plat != "unknown/unknown" // attestation manifests
	}
	for _, w := range want {
		if w == plat || (strings.Count(w, "/") == 1 && strings.HasPrefix(plat, w+"/")) {
			return true
		}
	}
	return false
}
