package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxBody bounds what doctor reads of any answer: manifests are at most a
// few MiB, and the blob it fetches is the smallest of the image.
const maxBody = 64 << 20

// manifestAccept is what dockerd and containerd send when they resolve a
// tag: every manifest type a pull can use. The OCI types are image-spec's;
// the Docker types, which image-spec lacks, are go-containerregistry's
// (doctor shares no code with the mirror, see TestDoctorIsOnlyAClient).
const manifestAccept = ocispec.MediaTypeImageIndex + ", " + string(types.DockerManifestList) + ", " +
	ocispec.MediaTypeImageManifest + ", " + string(types.DockerManifestSchema2)

func newTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConnsPerHost:   4,
	}
}

func parseMirror(raw string) (base, host string, err error) {
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.RawQuery != "" || u.User != nil {
		return "", "", fmt.Errorf("mirror URL %q: want http(s)://host[:port][/path]", raw)
	}
	return u.String(), u.Host, nil
}

// answer is one response as a Go registry client sees it (net/http drops
// Content-Length from a chunked answer and keeps it on a HEAD answer).
type answer struct {
	status int
	header http.Header
	length int64 // resp.ContentLength: -1 when unknown
	body   []byte
	err    error // transport failure, or a body read failure
	at     time.Time
}

// code is the OCI error code of an error answer, if its body has one.
func (a answer) code() string {
	var e struct {
		Errors []struct{ Code string }
	}
	if json.Unmarshal(a.body, &e) == nil && len(e.Errors) > 0 {
		return e.Errors[0].Code
	}
	return ""
}

// summary is a short description of an answer for details.
func (a answer) summary() string {
	if a.err != nil {
		return a.err.Error()
	}
	if c := a.code(); c != "" {
		return fmt.Sprintf("%d %s", a.status, c)
	}
	return fmt.Sprintf("%d", a.status)
}

// call sends method to a path on the mirror (with ns and credentials as
// configured when auth is set) and reads the answer.
func (d *doctor) call(ctx context.Context, method, path, ns string, auth bool, hdr http.Header) answer {
	u := d.base + path
	if ns != "" {
		u += "?ns=" + url.QueryEscape(ns)
	}
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		return answer{err: err}
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if auth {
		d.authorize(req)
	}
	return d.send(ctx, req)
}

// authorize adds the configured credentials, meant for the mirror only.
func (d *doctor) authorize(req *http.Request) {
	switch {
	case d.opts.Token != "":
		req.Header.Set("Authorization", "Bearer "+d.opts.Token)
	case d.opts.Username != "":
		req.SetBasicAuth(d.opts.Username, d.opts.Password)
	}
}

// send runs one request under the per-request timeout. Errors never carry
// the URL: a presigned URL's query string is a credential.
func (d *doctor) send(ctx context.Context, req *http.Request) answer {
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	req.Header.Set("User-Agent", "pullthrough-doctor")
	resp, err := d.client.Do(req.WithContext(ctx))
	if err != nil {
		return answer{err: bare(err), at: d.opts.Now()}
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header, length: resp.ContentLength, at: d.opts.Now()}
	a.body, err = io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		a.err = fmt.Errorf("reading the body: %w", bare(err))
	} else if len(a.body) > maxBody {
		a.err = fmt.Errorf("body larger than %d bytes", maxBody)
	}
	return a
}

// bare strips the URL from a client error.
func bare(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", strings.ToLower(ue.Op), ue.Err)
	}
	return err
}
