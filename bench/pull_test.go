package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// pullTimeout bounds one pull, cold or warm, of any contender.
const pullTimeout = 5 * time.Minute

// pullResult is one timed pull.
type pullResult struct {
	Duration time.Duration `json:"durationNs"`
	Bytes    int64         `json:"bytes"`
	Blobs    int           `json:"blobs"`
}

// pull fetches repoRef from the registry at base the way a client does,
// with go-containerregistry's remote package and nothing cached locally:
// a new connection pool, GET /v2/, the manifest (and for an index every
// platform's manifest), the config, then every layer read to the end,
// parallel at a time, like dockerd's three concurrent downloads. Redirects
// (to presigned S3 URLs) are followed. remote verifies each blob's digest
// and size while it is read, so a wrong byte fails the pull.
func pull(ctx context.Context, base, repoRef string, want v1.Hash, parallel int) (pullResult, error) {
	ctx, cancel := context.WithTimeout(ctx, pullTimeout)
	defer cancel()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	u, err := url.Parse(base)
	if err != nil {
		return pullResult{}, err
	}
	ref, err := name.ParseReference(u.Host+"/"+repoRef, name.Insecure)
	if err != nil {
		return pullResult{}, err
	}
	opts := []remote.Option{remote.WithTransport(tr), remote.WithContext(ctx)}

	start := time.Now()
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return pullResult{}, fmt.Errorf("manifest: %w", err)
	}
	if desc.Digest != want {
		return pullResult{}, fmt.Errorf("manifest digest: got %s, want %s", desc.Digest, want)
	}
	var imgs []v1.Image
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return pullResult{}, err
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return pullResult{}, err
		}
		for _, m := range im.Manifests {
			img, err := idx.Image(m.Digest)
			if err != nil {
				return pullResult{}, fmt.Errorf("platform manifest %s: %w", m.Digest, err)
			}
			imgs = append(imgs, img)
		}
	} else {
		img, err := desc.Image()
		if err != nil {
			return pullResult{}, err
		}
		imgs = append(imgs, img)
	}

	res := pullResult{}
	var layers []v1.Layer
	for _, img := range imgs {
		cfg, err := img.RawConfigFile() // digest-checked by remote
		if err != nil {
			return pullResult{}, fmt.Errorf("config: %w", err)
		}
		res.Bytes += int64(len(cfg))
		res.Blobs++
		ls, err := img.Layers()
		if err != nil {
			return pullResult{}, err
		}
		layers = append(layers, ls...)
	}

	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, parallel)
	)
	for _, l := range layers {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			n, err := readLayer(l)
			mu.Lock()
			defer mu.Unlock()
			res.Bytes += n
			res.Blobs++
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	res.Duration = time.Since(start)
	return res, errors.Join(errs...)
}

func readLayer(l v1.Layer) (int64, error) {
	d, _ := l.Digest()
	size, err := l.Size()
	if err != nil {
		return 0, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return 0, fmt.Errorf("layer %s: %w", d, err)
	}
	n, err := io.Copy(io.Discard, rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("layer %s after %d bytes: %w", d, n, err)
	}
	if n != size {
		return n, fmt.Errorf("layer %s: got %d bytes, want %d", d, n, size)
	}
	return n, nil
}
