package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/opencontainers/go-digest"
)

type descriptor struct {
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	Platform  *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
	} `json:"platform,omitempty"`
}

// manifestDoc is the part of an image manifest or index doctor reads.
type manifestDoc struct {
	Config    *descriptor  `json:"config"`
	Layers    []descriptor `json:"layers"`
	Manifests []descriptor `json:"manifests"`
}

// checkBlob GETs the image's smallest blob as a client does: a 307 to a
// presigned store URL is followed from this machine and the bytes there
// must hash to the digest. The clock check reads the same answers.
// publishTries and publishPause bound how long the blob check waits for a
// streamed fill to be published: at most about 5 s.
const (
	publishTries = 20
	publishPause = 250 * time.Millisecond
)

func (d *doctor) checkBlob(ctx context.Context, m manifests) []Result {
	const blobCheck, clockCheck = "blob", "clock"
	if m.digest == "" {
		return []Result{notChecked(blobCheck, "no verified manifest"), notChecked(clockCheck, "no verified manifest")}
	}
	desc, err := d.smallestBlob(ctx, m.body)
	if err != nil {
		return []Result{fail(blobCheck, err.Error(), ""), notChecked(clockCheck, "no blob to fetch")}
	}
	path := "/v2/" + d.name + "/blobs/" + desc.Digest.String()
	first := d.call(ctx, http.MethodGet, path, d.ns, true, nil)
	if first.err == nil && first.status == http.StatusOK && first.header.Get("X-Pullthrough-Cache") == "miss" {
		// A cold blob is streamed while it fills; once filled, a store
		// with presigned URLs answers the next GET with a redirect.
		if r := verifyBlob(blobCheck, first, desc, "streamed while filling"); r.Status != Pass {
			return []Result{r, clockResult(clockCheck, first, nil)}
		}
		// The fill publishes after its client got the last byte, and a GET
		// meanwhile joins it (another streamed "miss"): ask again, a few
		// times, until the blob is in the store.
		for try := 0; try < publishTries; try++ {
			first = d.call(ctx, http.MethodGet, path, d.ns, true, nil)
			if first.err != nil || first.status != http.StatusOK || first.header.Get("X-Pullthrough-Cache") != "miss" {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(publishPause):
			}
		}
	}
	switch {
	case first.err != nil:
		return []Result{fail(blobCheck, "GET failed: "+first.err.Error(), ""), notChecked(clockCheck, "no blob answer")}
	case first.status == http.StatusOK:
		return []Result{verifyBlob(blobCheck, first, desc, "served by the mirror itself"), clockResult(clockCheck, first, nil)}
	case first.status < 300 || first.status > 399:
		return []Result{fail(blobCheck, "GET answered "+first.summary(), "see the upstream check"), clockResult(clockCheck, first, nil)}
	}
	loc, err := url.Parse(first.header.Get("Location"))
	if err != nil || first.header.Get("Location") == "" {
		return []Result{fail(blobCheck, fmt.Sprintf("GET answered %d without a usable Location", first.status), ""), clockResult(clockCheck, first, nil)}
	}
	loc = resolveAgainst(d.base, loc)
	// Only the host is ever printed: the query string is a credential.
	where := fmt.Sprintf("%d to %s://%s", first.status, loc.Scheme, loc.Host)
	second := d.follow(ctx, loc)
	if second.err != nil {
		// The mirror's own Date stands in for the store's.
		return []Result{fail(blobCheck, where+": unreachable from this machine: "+second.err.Error(),
			"clients must reach the redirect target: the bucket's regional endpoint must be reachable and resolvable from client networks (VPC endpoint policies, proxies, firewalls)"),
			clockResult(clockCheck, first, loc)}
	}
	return []Result{verifyBlob(blobCheck, second, desc, where), clockResult(clockCheck, second, loc)}
}

// follow GETs a redirect target as a client does: through at most a few
// more redirects, with the mirror's credentials only on the mirror's host
// (Docker and containerd drop them on a cross-host redirect, and S3
// refuses a request that carries two kinds of authentication).
func (d *doctor) follow(ctx context.Context, target *url.URL) answer {
	var a answer
	for hop := 0; hop < 5; hop++ {
		req, err := http.NewRequest(http.MethodGet, target.String(), nil)
		if err != nil {
			return answer{err: fmt.Errorf("unusable redirect target")}
		}
		if target.Host == d.host {
			d.authorize(req)
		}
		a = d.send(ctx, req)
		next, err := url.Parse(a.header.Get("Location"))
		if a.err != nil || a.status < 300 || a.status > 399 || err != nil || a.header.Get("Location") == "" {
			return a
		}
		target = target.ResolveReference(next)
	}
	return a
}

func resolveAgainst(base string, loc *url.URL) *url.URL {
	b, err := url.Parse(base)
	if err != nil {
		return loc
	}
	return b.ResolveReference(loc)
}

func verifyBlob(check string, a answer, desc descriptor, where string) Result {
	switch {
	case a.err != nil:
		return fail(check, where+": "+a.err.Error(), "")
	case a.status != http.StatusOK:
		return fail(check, where+": answered "+a.summary(),
			"a 403 from the store usually means an expired or wrongly signed URL: see the clock check and the function's S3 permissions")
	}
	got := desc.Digest.Algorithm().FromBytes(a.body)
	if got != desc.Digest || int64(len(a.body)) != desc.Size {
		return fail(check, fmt.Sprintf("%s: %d bytes hashing to %s, want %d bytes of %s", where, len(a.body), got, desc.Size, desc.Digest),
			"the mirror serves damaged blobs: clients fail the pull; check the store and anything in front of it")
	}
	return pass(check, fmt.Sprintf("%s: %d bytes match %s", where, len(a.body), desc.Digest))
}

// smallestBlob picks the smallest blob (config or layer) of the image; for
// an index, of its linux/amd64 image, else its first.
func (d *doctor) smallestBlob(ctx context.Context, body []byte) (descriptor, error) {
	var doc manifestDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return descriptor{}, fmt.Errorf("the manifest is not JSON: %w", err)
	}
	if len(doc.Manifests) > 0 {
		child := doc.Manifests[0]
		for _, c := range doc.Manifests {
			if c.Platform != nil && c.Platform.OS == "linux" && c.Platform.Architecture == "amd64" {
				child = c
				break
			}
		}
		a := d.call(ctx, http.MethodGet, "/v2/"+d.name+"/manifests/"+child.Digest.String(), d.ns, true, http.Header{"Accept": {manifestAccept}})
		if _, r := verifyManifest("blob", a, child.Digest); r.Status != Pass {
			return descriptor{}, fmt.Errorf("image manifest %s of the index: %s", child.Digest, r.Detail)
		}
		doc = manifestDoc{}
		if err := json.Unmarshal(a.body, &doc); err != nil {
			return descriptor{}, fmt.Errorf("image manifest %s is not JSON: %w", child.Digest, err)
		}
	}
	var all []descriptor
	if doc.Config != nil {
		all = append(all, *doc.Config)
	}
	all = append(all, doc.Layers...)
	var best descriptor
	for _, b := range all {
		if b.Digest.Validate() == nil && (best.Digest == "" || b.Size < best.Size) {
			best = b
		}
	}
	if best.Digest == "" {
		return descriptor{}, fmt.Errorf("the manifest names no blob")
	}
	if best.Size > maxBody {
		return descriptor{}, fmt.Errorf("the smallest blob has %d bytes, more than doctor reads (%d): pass a smaller --image", best.Size, maxBody)
	}
	return best, nil
}

// Clock skew limits: SigV4 refuses requests dated more than 15 minutes
// from the server's clock (AWS docs, "Signature Version 4 signing process:
// RequestTimeTooSkewed"); a minute is already worth a warning.
const (
	maxSkew  = 15 * time.Minute
	warnSkew = time.Minute
)

// clockResult compares the answering server's Date (S3's, when the blob
// came from a presigned URL) with this machine's clock, and the presigned
// URL's X-Amz-Date and X-Amz-Expires with that Date: a signer whose clock
// runs ahead makes URLs S3 does not accept yet, one behind makes URLs that
// expire early.
func clockResult(check string, a answer, presigned *url.URL) Result {
	server, err := http.ParseTime(a.header.Get("Date"))
	if a.err != nil || err != nil {
		return warn(check, "no Date header to compare clocks with", "")
	}
	local := a.at.Sub(server).Round(time.Second)
	localNote := fmt.Sprintf("this machine's clock is %s off the server's", abs(local))
	if presigned == nil || presigned.Query().Get("X-Amz-Date") == "" {
		if abs(local) > warnSkew {
			return warn(check, localNote, "sync this machine's clock (NTP) before trusting time-based findings")
		}
		return pass(check, localNote+"; no presigned URL to check")
	}
	q := presigned.Query()
	signed, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	if err != nil {
		return fail(check, "the presigned URL has an unreadable X-Amz-Date", "")
	}
	var expires time.Duration
	if s, err := time.ParseDuration(q.Get("X-Amz-Expires") + "s"); err == nil {
		expires = s
	}
	age := server.Sub(signed)
	switch {
	case -age > maxSkew:
		return fail(check, fmt.Sprintf("the presigned URL is dated %s after the store's clock: the signer's clock is ahead and the store refuses such URLs", -age),
			"the mirror's clock is wrong: on Lambda this cannot happen, so look for a front end rewriting the Location, or the local server's host clock (NTP)")
	case expires > 0 && age > expires:
		return fail(check, fmt.Sprintf("the presigned URL was signed %s before the store's clock and expired after %s", age, expires),
			"the mirror hands out expired URLs: check its clock (NTP) and PULLTHROUGH_PRESIGN_TTL")
	case -age > warnSkew:
		return warn(check, fmt.Sprintf("the presigned URL is dated %s after the store's clock", -age), "check the mirror host's clock (NTP)")
	case abs(local) > warnSkew:
		return warn(check, fmt.Sprintf("presigned URL signed %s before the store's Date, valid %s; %s", age, expires, localNote),
			"sync this machine's clock (NTP)")
	}
	return pass(check, fmt.Sprintf("presigned URL signed %s before the store's Date, valid %s; %s", age, expires, localNote))
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
