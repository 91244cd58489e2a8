// Package doctor checks a live pullthrough mirror the way its clients use
// it: the /v2/ ping and client access, the tag HEAD that dockerd, containerd
// and go-containerregistry each judge by different rules, manifest and blob
// bytes against their digests (following the presigned redirect), ?ns=
// routing, the upstream's reachability and rate-limit budget, and clock
// skew against the presigned URL.
//
// It only sends GET and HEAD requests and never writes anything. It is not
// a conformance suite: it checks the one image it is given.
package doctor

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/distribution/reference"
)

// DefaultImage is small, public and on the default upstream of most
// deployments.
const DefaultImage = "library/alpine:latest"

// Defaults for zero Options fields.
const (
	DefaultTimeout  = 20 * time.Second // per request, body included
	DefaultDeadline = 2 * time.Minute  // the whole run
)

// Status is a check's outcome.
type Status string

const (
	Pass Status = "PASS"
	Warn Status = "WARN"
	Fail Status = "FAIL"
)

// Result is one check's outcome: Detail says what was seen, Hint what to
// do about it (empty when there is nothing to do).
type Result struct {
	Check  string `json:"check"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	Hint   string `json:"hint"`
}

// Options say which mirror to check and how to reach it.
type Options struct {
	// Mirror is the mirror's base URL, e.g. a function URL.
	Mirror string
	// Image is NAME[:TAG] in Docker's notation (default DefaultImage). A
	// name without a registry host goes to the mirror's default upstream,
	// as Docker's registry-mirrors requests do; one with a host
	// (ghcr.io/org/app, docker.io/library/alpine) is asked for with
	// ?ns=<host>, as containerd does.
	Image string
	// Namespaces are the ?ns= values whose routing is checked. Empty means
	// the upstream the mirror names (OCI-Namespace) for Image.
	Namespaces []string
	// Token is a bearer token, or Username and Password basic credentials,
	// for a mirror that refuses anonymous clients. Sent to the mirror only.
	Token              string
	Username, Password string
	// Timeout bounds each request (default DefaultTimeout), Deadline the
	// whole run (default DefaultDeadline).
	Timeout, Deadline time.Duration
	// Transport carries every request; nil means a dedicated one. Doctor
	// never follows redirects itself: it looks at them.
	Transport http.RoundTripper
	// Now is the local clock (default time.Now).
	Now func() time.Time
}

// Run runs every check against opts.Mirror, in order, and returns one
// result per check. Problems with the mirror are results, not errors; an
// error means the options are unusable.
func Run(ctx context.Context, opts Options) ([]Result, error) {
	d, err := newDoctor(opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.Deadline)
	defer cancel()

	rs, reachable := d.checkBase(ctx)
	if !reachable {
		return rs, nil
	}
	m := d.checkManifests(ctx)
	rs = append(rs, m.results...)
	rs = append(rs, d.checkBlob(ctx, m)...)
	rs = append(rs, d.checkNamespaces(ctx, m)...)
	rs = append(rs, checkUpstream(m), checkRateLimit(m))
	return rs, nil
}

// Failures counts the results that are a FAIL.
func Failures(rs []Result) int {
	n := 0
	for _, r := range rs {
		if r.Status == Fail {
			n++
		}
	}
	return n
}

type doctor struct {
	opts   Options
	base   string // mirror URL without a trailing slash
	host   string // mirror host, the only one credentials go to
	name   string // repository path on the registry, e.g. library/alpine
	tag    string
	ns     string // ?ns= for the image's own requests ("" for docker.io)
	client *http.Client
}

func newDoctor(opts Options) (*doctor, error) {
	if opts.Image == "" {
		opts.Image = DefaultImage
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Deadline <= 0 {
		opts.Deadline = DefaultDeadline
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	base, host, err := parseMirror(opts.Mirror)
	if err != nil {
		return nil, err
	}
	named, err := reference.ParseNormalizedNamed(opts.Image)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", opts.Image, err)
	}
	tag := "latest"
	if t, ok := named.(reference.Tagged); ok {
		tag = t.Tag()
	}
	if _, ok := named.(reference.Digested); ok {
		return nil, fmt.Errorf("image %q: give a tag, not a digest: the tag HEAD is what clients send first", opts.Image)
	}
	d := &doctor{opts: opts, base: base, host: host, name: reference.Path(named), tag: tag}
	if first, _, ok := strings.Cut(opts.Image, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		d.ns = reference.Domain(named)
	}
	rt := opts.Transport
	if rt == nil {
		rt = newTransport()
	}
	d.client = &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	return d, nil
}

func pass(check, detail string) Result { return Result{Check: check, Status: Pass, Detail: detail} }

func warn(check, detail, hint string) Result {
	return Result{Check: check, Status: Warn, Detail: detail, Hint: hint}
}

func fail(check, detail, hint string) Result {
	return Result{Check: check, Status: Fail, Detail: detail, Hint: hint}
}

// notChecked reports a check that an earlier failure made impossible.
func notChecked(check, why string) Result {
	return warn(check, "not checked: "+why, "fix the failures above first")
}

// missing names the headers of want that h lacks, for details.
func missing(h http.Header, want ...string) string {
	var out []string
	for _, k := range want {
		if h.Get(k) == "" {
			out = append(out, k)
		}
	}
	return strings.Join(out, ", ")
}
