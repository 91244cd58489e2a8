package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullthrough/pullthrough/internal/oci"
)

// The wire calls. Each builds its request, sends it through the client's
// transport stack and ends in one status check (checkStatus); the caller
// gets typed results or this package's errors (errors.go).

// ResolveAccept is the Accept header every manifest request carries,
// whatever the mirror's client asked: a tag is resolved once, to what it
// is, and a client's narrower Accept list only selects what that client is
// sent. Schema 1 types are listed so that a registry holding an old schema
// 1 tag sends it as it is: quay converts a manifest whose type the client
// did not list, falling back to schema 1 (quay/quay
// endpoints/v2/manifest.py, _rewrite_schema_if_necessary).
var ResolveAccept = strings.Join([]string{
	ocispec.MediaTypeImageIndex, oci.MediaDockerList, ocispec.MediaTypeImageManifest, oci.MediaDockerManifest,
	oci.MediaSchema1Signed, oci.MediaSchema1,
}, ", ")

// HeadBlob learns a blob's size in bytes without downloading it. Some
// registries refuse HEAD on blobs (ECR Public answers 401 even with a
// token, aws/containers-roadmap#2671; GHCR's blob storage answers 403); a
// one-byte ranged GET tells the size too (206 with Content-Range).
func (c *Client) HeadBlob(ctx context.Context, name string, d digest.Digest) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeouts.metadata)
	defer cancel()
	resp, err := c.do(ctx, http.MethodHead, name, "blobs/"+d.String(), nil, true)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK && resp.ContentLength >= 0 {
		return resp.ContentLength, nil
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusUnauthorized, http.StatusForbidden, http.StatusMethodNotAllowed:
	default:
		return 0, c.checkStatus(resp)
	}
	resp, err = c.do(ctx, http.MethodGet, name, "blobs/"+d.String(), http.Header{"Range": {"bytes=0-0"}}, true)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode == http.StatusPartialContent {
		// Content-Range: bytes 0-0/12345
		if _, total, ok := strings.Cut(resp.Header.Get("Content-Range"), "/"); ok {
			if n, err := strconv.ParseInt(total, 10, 64); err == nil && n >= 0 {
				return n, nil
			}
		}
	}
	if resp.StatusCode == http.StatusOK && resp.ContentLength >= 0 {
		return resp.ContentLength, nil
	}
	return 0, c.checkStatus(resp)
}

// IdleBodyTimeout bounds the silence of an upstream blob body mid-transfer
// (the default of Timeouts.Body).
const IdleBodyTimeout = 60 * time.Second

// Blob is an upstream blob body being read.
type Blob struct {
	// Size is the length the upstream announced (Content-Length), or -1.
	Size int64
	// Partial: the upstream answered a ranged GET with 206 and
	// ContentRange; false where it ignored Range and sent the whole blob.
	Partial      bool
	ContentRange string
	body         *idleReader
	resp         *http.Response
	cancel       context.CancelFunc
}

// Read reads the body. A body silent for Timeouts.Body is cut.
func (b *Blob) Read(p []byte) (int, error) { return b.body.Read(p) }

// Close ends the transfer.
func (b *Blob) Close() error {
	b.body.stop()
	err := b.resp.Body.Close()
	b.cancel()
	return err
}

// GetBlob opens the whole blob (200). The caller closes it.
func (c *Client) GetBlob(ctx context.Context, name string, d digest.Digest) (*Blob, error) {
	return c.getBlob(ctx, name, d, nil, http.StatusOK)
}

// GetBlobRange opens bytes [off, off+n) of a blob: 206 (Partial), or 200
// when the upstream ignores Range (RFC 9110 section 14.2). The caller
// closes it.
func (c *Client) GetBlobRange(ctx context.Context, name string, d digest.Digest, off, n int64) (*Blob, error) {
	rng := http.Header{"Range": {fmt.Sprintf("bytes=%d-%d", off, off+n-1)}}
	return c.getBlob(ctx, name, d, rng, http.StatusOK, http.StatusPartialContent)
}

// GetBlobFrom opens a blob from byte off to its end (Range: bytes=off-):
// 206 (Partial), or 200 when the upstream ignores Range and sends the
// whole blob. The caller closes it.
func (c *Client) GetBlobFrom(ctx context.Context, name string, d digest.Digest, off int64) (*Blob, error) {
	rng := http.Header{"Range": {fmt.Sprintf("bytes=%d-", off)}}
	return c.getBlob(ctx, name, d, rng, http.StatusOK, http.StatusPartialContent)
}

func (c *Client) getBlob(ctx context.Context, name string, d digest.Digest, hdr http.Header, ok ...int) (*Blob, error) {
	ctx, cancel := context.WithCancel(ctx)
	resp, err := c.do(ctx, http.MethodGet, name, "blobs/"+d.String(), hdr, true)
	if err != nil {
		cancel()
		return nil, err
	}
	if err := c.checkStatus(resp, ok...); err != nil {
		cancel()
		return nil, err
	}
	return &Blob{
		Size: resp.ContentLength, Partial: resp.StatusCode == http.StatusPartialContent,
		ContentRange: resp.Header.Get("Content-Range"),
		body:         newIdleReader(resp.Body, c.attempt.Body, cancel), resp: resp, cancel: cancel,
	}, nil
}

// BlobLocation asks the upstream for a blob without following its redirect
// and returns the redirect target if it is a URL on another host that needs
// no credentials of ours (a signed CDN or object-store URL), else "".
func (c *Client) BlobLocation(ctx context.Context, name string, d digest.Digest) (string, error) {
	resp, err := c.do(ctx, http.MethodGet, name, "blobs/"+d.String(), nil, false)
	if err != nil {
		return "", err
	}
	resp.Body.Close() // a 200 here means the upstream serves blobs itself
	switch resp.StatusCode {
	case http.StatusTemporaryRedirect, http.StatusFound, http.StatusSeeOther, http.StatusMovedPermanently, http.StatusPermanentRedirect:
	default:
		return "", nil
	}
	loc, err := resp.Location()
	plainOK := loc != nil && loc.Scheme == "http" && c.base.Scheme == "http" // no downgrade
	if err != nil || loc.Scheme != "https" && !plainOK || strings.EqualFold(loc.Host, c.base.Host) {
		return "", nil
	}
	// A redirect to another registry's API (a registry.k8s.io-like
	// redirector's regional host) is no signed URL: that host wants its own
	// token, which the client would not have.
	if strings.HasPrefix(loc.Path, "/v2/") && strings.Contains(loc.Path, "/blobs/") {
		return "", nil
	}
	// Nor is an address the mirror itself would not connect to: clients
	// are not sent inward either (a fill, under the dial policy, is tried
	// instead).
	if c.policy.allowedURL(loc) != nil {
		return "", nil
	}
	return loc.String(), nil
}

// HeadManifest asks for a manifest's digest without its body. It returns
// the upstream's status and the digest it named ("" if none or invalid);
// an error only when there was no answer.
func (c *Client) HeadManifest(ctx context.Context, name, ref string) (int, digest.Digest, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeouts.metadata)
	defer cancel()
	resp, err := c.do(ctx, http.MethodHead, name, "manifests/"+ref, http.Header{"Accept": {ResolveAccept}}, true)
	if err != nil {
		return 0, "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, "", nil
	}
	d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest"))
	if err != nil {
		d = ""
	}
	return resp.StatusCode, d, nil
}

// Manifest is a manifest as the upstream served it, verified.
type Manifest struct {
	MediaType string
	Digest    digest.Digest
	Data      []byte
	ETag      string // the upstream's, for If-None-Match
	// NotModified: the upstream answered 304 to IfNoneMatch; only ETag
	// (the one sent) is set.
	NotModified bool
}

// GetManifest GETs a manifest with ResolveAccept, of at most maxSize bytes,
// and verifies it against the digest it was asked by, or else against the
// digest the upstream claims; a signed schema 1 manifest is verified by its
// payload's digest (oci.ManifestDigests). With ifNoneMatch set a 304 is an
// answer (Manifest.NotModified).
func (c *Client) GetManifest(ctx context.Context, name, ref, ifNoneMatch string, maxSize int64) (Manifest, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeouts.metadata)
	defer cancel()
	hdr := http.Header{"Accept": {ResolveAccept}}
	if ifNoneMatch != "" {
		hdr.Set("If-None-Match", ifNoneMatch)
	}
	resp, err := c.do(ctx, http.MethodGet, name, "manifests/"+ref, hdr, true)
	if err != nil {
		return Manifest{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified && ifNoneMatch != "" {
		return Manifest{ETag: ifNoneMatch, NotModified: true}, nil
	}
	if err := c.checkStatus(resp, http.StatusOK); err != nil {
		return Manifest{}, err
	}
	data, err := readBounded(resp.Body, maxSize)
	if err != nil {
		return Manifest{}, fmt.Errorf("manifest %s/%s: %w: %w", name, ref, ErrUnusable, err)
	}
	if resp.ContentLength >= 0 && resp.ContentLength != int64(len(data)) {
		return Manifest{}, fmt.Errorf("manifest %s/%s truncated: %w", name, ref, ErrBadContent)
	}
	// Only a registry manifest is a registry's answer: a captive portal's
	// or login wall's 200 page (harbor #23882, registry.k8s.io #287) or any
	// other type is trouble on the way, not what the tag now is.
	if isPage(resp.Header, data) {
		return Manifest{}, fmt.Errorf("manifest %s/%s: a web page: %w", name, ref, ErrNotRegistry)
	}
	mt := manifestMediaType(resp.Header.Get("Content-Type"), data)
	if mt == "" {
		return Manifest{}, fmt.Errorf("manifest %s/%s has no media type: %w", name, ref, ErrUnusable)
	}
	if !oci.IsManifestType(mt) {
		return Manifest{}, fmt.Errorf("manifest %s/%s: media type %q is no registry manifest type: %w", name, ref, oci.Truncate(mt), ErrNotRegistry)
	}
	// digest.Parse returns its input even when it is invalid.
	want, err := digest.Parse(ref)
	if err != nil {
		if want, err = digest.Parse(resp.Header.Get("Docker-Content-Digest")); err != nil {
			want = ""
		}
	}
	alg := digest.Canonical
	if want != "" {
		alg = want.Algorithm()
	}
	candidates := oci.ManifestDigests(alg, mt, data)
	got := candidates[0]
	if want != "" {
		if !slices.Contains(candidates, want) {
			return Manifest{}, fmt.Errorf("manifest %s/%s: upstream sent %s: %w", name, ref, got, ErrBadContent)
		}
		got = want
	}
	return Manifest{MediaType: mt, Digest: got, Data: data, ETag: resp.Header.Get("ETag")}, nil
}

// manifestMediaType trusts a specific Content-Type and otherwise reads the
// manifest's own mediaType field (some registries answer application/json),
// or for a schema 1 manifest, which has none, its schemaVersion and
// signatures (application/json is schema 1's historical type).
func manifestMediaType(contentType string, data []byte) string {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt != "" && mt != "application/json" && mt != "text/plain" && mt != "application/octet-stream" {
		return mt
	}
	var probe struct {
		MediaType     string            `json:"mediaType"`
		SchemaVersion int               `json:"schemaVersion"`
		Signatures    []json.RawMessage `json:"signatures"`
	}
	switch {
	case json.Unmarshal(data, &probe) != nil:
	case probe.MediaType != "":
		return probe.MediaType
	case probe.SchemaVersion == 1 && len(probe.Signatures) > 0:
		return oci.MediaSchema1Signed
	case probe.SchemaVersion == 1:
		return oci.MediaSchema1
	}
	return mt
}

// Referrers returns the referrers index of subject d, of at most maxSize
// bytes: from the upstream's referrers API, or from the tag schema
// (<alg>-<hex> tag) for any answer that is not a valid image index. The OCI
// distribution spec (spec.md, "Listing Referrers") says: "If the referrers
// API returns a 404, the client MUST fallback to pulling the referrers tag
// schema", and if that "does not return a valid image index, the client
// SHOULD assume there are no referrers". Registries without the API answer
// more than 404: Artifactory answers 406 (google/go-containerregistry#1962),
// some a 400 or a 200 HTML page. Only auth, rate-limit and server failures
// are errors: they say nothing about the API.
//
// A list the upstream pages (a rel="next" Link, which the spec makes a
// MUST when paging) is followed to its end and returned as one index, so
// that the serving side filters and caches the whole list: at most
// MaxReferrerPages pages on the upstream's host and maxSize bytes in all.
// A list that breaks a bound, a page that fails or is not an index, or a
// link back to a page already read fails the whole call, as
// go-containerregistry's client does (PR #2446): a part of the list would
// hide signatures from admission policies.
func (c *Client) Referrers(ctx context.Context, name string, d digest.Digest, maxSize int64) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeouts.metadata)
	defer cancel()
	rest := "referrers/" + d.String()
	body, next, err := c.getIndex(ctx, name, rest, maxSize)
	if !errors.Is(err, errNotAnIndex) {
		if err != nil || next == nil {
			return body, err
		}
		return c.referrerPages(ctx, name, rest, body, next, maxSize)
	}
	tag := d.Algorithm().String() + "-" + d.Encoded()
	body, _, err = c.getIndex(ctx, name, "manifests/"+tag, maxSize)
	if errors.Is(err, errNotAnIndex) {
		// The spec: no valid index under the tag means no referrers.
		return json.RawMessage(`{"schemaVersion":2,"mediaType":"` + ocispec.MediaTypeImageIndex + `","manifests":[]}`), nil
	}
	return body, err
}

// MaxReferrerPages bounds the pages of one referrers list the mirror reads.
const MaxReferrerPages = 32

// referrerPages reads the pages after first, each the query of the last
// one's next link, and merges their descriptors into one index.
func (c *Client) referrerPages(ctx context.Context, name, rest string, first json.RawMessage, next url.Values, maxSize int64) (json.RawMessage, error) {
	var all oci.ReferrersIndex
	if err := json.Unmarshal(first, &all); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", rest, ErrUnusable, err)
	}
	used := int64(len(first))
	seen := map[string]bool{}
	for pages := 1; next != nil; pages++ {
		q := next.Encode()
		switch {
		case pages == MaxReferrerPages:
			return nil, fmt.Errorf("%s: more than %d pages: %w", rest, MaxReferrerPages, ErrUnusable)
		case seen[q]:
			return nil, fmt.Errorf("%s: the next link goes back to a page already read: %w", rest, ErrUnusable)
		case used >= maxSize:
			return nil, fmt.Errorf("%s: pages larger than %d bytes in all: %w", rest, maxSize, ErrUnusable)
		}
		seen[q] = true
		page, more, err := c.getIndex(ctx, name, rest+"?"+q, maxSize-used)
		if errors.Is(err, errNotAnIndex) {
			err = fmt.Errorf("%w: %w", ErrUnusable, err) // not a fallback now: the API answered page 1
		}
		if err != nil {
			return nil, fmt.Errorf("referrers page %d: %w", pages+1, err)
		}
		var idx oci.ReferrersIndex
		if err := json.Unmarshal(page, &idx); err != nil {
			return nil, fmt.Errorf("%s: %w: %w", rest, ErrUnusable, err)
		}
		all.Manifests = append(all.Manifests, idx.Manifests...)
		used += int64(len(page))
		next = more
	}
	all.MediaType = ocispec.MediaTypeImageIndex
	return json.Marshal(all)
}

// errNotAnIndex is an upstream answer that is not an image index and not a
// failure either: the thing asked for is absent or unsupported.
var errNotAnIndex = errors.New("upstream answer is not an image index")

// getIndex GETs a small image index, with the query of the next page the
// upstream links (nextPage), if any. A client error other than auth and
// rate limiting, or a 200 that is not an OCI image index, is errNotAnIndex.
func (c *Client) getIndex(ctx context.Context, name, rest string, maxSize int64) (json.RawMessage, url.Values, error) {
	resp, err := c.do(ctx, http.MethodGet, name, rest, http.Header{"Accept": {ocispec.MediaTypeImageIndex}}, true)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	switch s := resp.StatusCode; {
	case s == http.StatusOK:
	case s >= 400 && s < 500 && s != http.StatusUnauthorized && s != http.StatusForbidden && s != http.StatusTooManyRequests:
		drain(resp)
		return nil, nil, fmt.Errorf("%s: upstream answered %d: %w", rest, s, errNotAnIndex)
	default:
		return nil, nil, c.checkStatus(resp)
	}
	body, err := readBounded(resp.Body, maxSize)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w: %w", rest, ErrUnusable, err)
	}
	// Read strictly, with the type the serving side reads the answer
	// with: a tolerant read would let through an answer it then cannot
	// read, failing every request.
	var idx oci.ReferrersIndex
	if json.Unmarshal(body, &idx) != nil || idx.SchemaVersion != 2 || idx.Manifests == nil ||
		!(idx.MediaType == ocispec.MediaTypeImageIndex || idx.MediaType == "" && mediaTypeOf(resp.Header) == ocispec.MediaTypeImageIndex) {
		return nil, nil, fmt.Errorf("%s: %w", rest, errNotAnIndex)
	}
	path, _, _ := strings.Cut(rest, "?")
	return body, nextPage(resp, c.base.JoinPath("v2", name, path)), nil
}

// mediaTypeOf is a Content-Type without parameters.
func mediaTypeOf(h http.Header) string {
	mt, _, _ := strings.Cut(h.Get("Content-Type"), ";")
	return strings.TrimSpace(mt)
}

// idleReader cancels a transfer that makes no progress for a while: a
// stalled upstream must not hold a fill (and its waiters) for the whole
// fill timeout.
type idleReader struct {
	r     io.Reader
	d     time.Duration
	timer *time.Timer
}

func newIdleReader(r io.Reader, d time.Duration, cancel context.CancelFunc) *idleReader {
	return &idleReader{r: r, d: d, timer: time.AfterFunc(d, cancel)}
}

func (i *idleReader) Read(p []byte) (int, error) {
	n, err := i.r.Read(p)
	if n > 0 {
		i.timer.Reset(i.d)
	}
	return n, err
}

func (i *idleReader) stop() { i.timer.Stop() }
