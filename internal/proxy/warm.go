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
		return ErrNotFound.With("the warm endpoint is enabled only with PULLTHROUGH_CLIENT_TOKENS or PULLTHROUGH_CLIENT_USERS", nil)
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		return ErrUnsupported.With("POST a JSON body {\"image\": \"...\", \"platforms\": [\"linux/amd64\"]}", nil)
	}
	var req warmRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || req.Image == "" {
		return ErrQueryInvalid.With("want a JSON body {\"image\": \"...\", \"platforms\": [...]}", nil)
	}
	// Validate before answering 200, so bad input gets a real status.
	if _, err := p.warmRoute(req.Image); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	pw := &flushWriter{w: w}
	if err := p.Warm(r.Context(), req.Image, req.Platforms, pw); err != nil {
		fmt.Fprintf(pw, "error: %s\n", asOCI(err).Message)
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
		return route{}, ErrNameInvalid.With(fmt.Sprintf("invalid image reference %q", truncate(image)), nil)
	}
	up, ok := p.lookup(reference.Domain(named))
	if !ok {
		return route{}, ErrNameUnknown.With(fmt.Sprintf("registry %q is not served by this mirror", reference.Domain(named)), nil)
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
	images := []storedManifest{m}
	if m.MediaType == mediaOCIIndex || m.MediaType == mediaDockerList {
		images = nil
		var idx struct {
			Manifests []struct {
				Digest   digest.Digest `json:"digest"`
				Platform *struct {
					OS           string `json:"os"`
					Architecture string `json:"architecture"`
					Variant      string `json:"variant"`
				} `json:"platform"`
			} `json:"manifests"`
		}
		if err := json.Unmarshal(m.Data, &idx); err != nil {
			return ErrManifestInvalid.With("index unreadable", err)
		}
		for _, d := range idx.Manifests {
			plat := ""
			if d.Platform != nil {
				plat = strings.TrimSuffix(d.Platform.OS+"/"+d.Platform.Architecture+"/"+d.Platform.Variant, "/")
			}
			if !platformWanted(plat, platforms) {
				continue
			}
			child := route{kind: routeManifest, name: rt.name, digest: d.Digest, up: rt.up}
			cm, _, err := p.manifest(ctx, child, fullAccept)
			if err != nil {
				return err
			}
			fmt.Fprintf(progress, "manifest %s %s\n", cm.Digest, plat)
			images = append(images, cm)
		}
		if len(images) == 0 {
			return ErrManifestUnknown.With(fmt.Sprintf("no image for platforms %v", platforms), nil)
		}
	}
	for _, im := range images {
		var doc struct {
			Config struct {
				Digest digest.Digest `json:"digest"`
			} `json:"config"`
			Layers []struct {
				Digest digest.Digest `json:"digest"`
			} `json:"layers"`
		}
		if err := json.Unmarshal(im.Data, &doc); err != nil {
			return ErrManifestInvalid.With("manifest unreadable", err)
		}
		blobs := []digest.Digest{doc.Config.Digest}
		for _, l := range doc.Layers {
			blobs = append(blobs, l.Digest)
		}
		for _, d := range blobs {
			if err := d.Validate(); err != nil {
				return ErrManifestInvalid.With("manifest names an invalid digest", err)
			}
			start := p.now()
			br := route{kind: routeBlob, name: rt.name, digest: d, up: rt.up}
			if size, err := p.store.Stat(ctx, blobKey(d)); err == nil {
				fmt.Fprintf(progress, "blob %s %d bytes cached\n", d, size)
				continue
			} else if !errors.Is(err, fs.ErrNotExist) {
				return ErrUnavailable.With("cache storage unavailable", err)
			}
			if err := p.knownAbsent(br); err != nil {
				return err
			}
			out, err := p.fill(ctx, br, fillFacts{size: -1})
			switch {
			case err != nil:
				return err
			case out.handedOff:
				fmt.Fprintf(progress, "blob %s %d bytes filling in the background\n", d, out.size)
			default:
				fmt.Fprintf(progress, "blob %s %d bytes filled in %s\n", d, out.size, p.now().Sub(start).Round(time.Millisecond))
			}
		}
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
