package doctor

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pullthrough/pullthrough/internal/dockerhub"
)

// Headers pullthrough sets on answers (internal/proxy).
const (
	hNamespace = "OCI-Namespace"
	hCache     = "X-Pullthrough-Cache"
	hRateLimit = "X-Pullthrough-Upstream-Ratelimit-Remaining"
)

// unknownNamespace is a registry no mirror serves (.invalid is reserved,
// RFC 2606).
const unknownNamespace = "doctor.invalid"

// checkNamespaces checks containerd-style routing: a manifest HEAD with
// ?ns=<registry> must be answered by that upstream (pullthrough names it
// in OCI-Namespace), and a registry the mirror does not serve must be
// refused with a 4xx, not served from the default upstream.
func (d *doctor) checkNamespaces(ctx context.Context, m manifests) []Result {
	namespaces := d.opts.Namespaces
	if len(namespaces) == 0 {
		ns := m.head.header.Get(hNamespace)
		if ns == "" {
			ns = dockerhub.Host
		}
		namespaces = []string{ns}
	}
	path := "/v2/" + d.name + "/manifests/" + d.tag
	accept := http.Header{"Accept": {manifestAccept}}
	var rs []Result
	for _, ns := range namespaces {
		check := "ns:" + ns
		a := d.call(ctx, http.MethodHead, path, ns, true, accept)
		got := a.header.Get(hNamespace)
		switch {
		case a.err != nil:
			rs = append(rs, fail(check, "HEAD failed: "+a.err.Error(), ""))
		case strings.EqualFold(got, ns) || (got == dockerhub.Host && dockerhub.Is(ns)):
			rs = append(rs, pass(check, fmt.Sprintf("?ns=%s is routed to %s (HEAD answered %d)", ns, got, a.status)))
		case got != "":
			rs = append(rs, fail(check, fmt.Sprintf("?ns=%s is routed to %s", ns, got),
				"containerd hosts for "+ns+" would get another registry's content: check PULLTHROUGH_UPSTREAMS"))
		default:
			rs = append(rs, fail(check, fmt.Sprintf("?ns=%s answered %s without OCI-Namespace", ns, a.summary()),
				"add "+ns+" to PULLTHROUGH_UPSTREAMS, or drop it from the clients' hosts.toml; a front end must pass the query string and headers through"))
		}
	}
	a := d.call(ctx, http.MethodHead, path, unknownNamespace, true, accept)
	check := "ns:unknown"
	switch {
	case a.err != nil:
		rs = append(rs, fail(check, "HEAD failed: "+a.err.Error(), ""))
	case a.status >= 400 && a.status < 500:
		rs = append(rs, pass(check, fmt.Sprintf("?ns=%s is refused (%d)", unknownNamespace, a.status)))
	default:
		rs = append(rs, fail(check, fmt.Sprintf("?ns=%s answered %d, want a 4xx: the mirror ignores ?ns=", unknownNamespace, a.status),
			"a containerd host mirroring several registries through this URL gets the default upstream's image for every one of them"))
	}
	return rs
}

// checkUpstream reads what the tag HEAD made the mirror do upstream
// (X-Pullthrough-Cache) or why it could not answer.
func checkUpstream(m manifests) Result {
	const check = "upstream"
	a := m.head
	cache := a.header.Get(hCache)
	code := m.get.code() // a HEAD answer has no body; the GET after it says why
	switch {
	case a.err != nil:
		return fail(check, "the tag HEAD failed: "+a.err.Error(), "")
	case a.status == http.StatusUnauthorized || a.status == http.StatusForbidden:
		return notChecked(check, fmt.Sprintf("the tag HEAD answered %d", a.status))
	case a.status == http.StatusTooManyRequests || code == "TOOMANYREQUESTS":
		return fail(check, "the upstream's rate limit is reached and the mirror has no cached copy",
			"give the mirror upstream credentials (PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET), or wait for the window to pass")
	case a.status == http.StatusNotFound:
		// The mirror's error answers carry no cache header: a missing tag
		// is not a missing mirror.
		return notChecked(check, fmt.Sprintf("the tag HEAD answered 404 (%s): the upstream has no such image; pass --image with one it has", code))
	case a.status >= 500:
		return fail(check, fmt.Sprintf("the mirror could not reach the upstream and has no cached copy (%d %s)", a.status, code),
			"check the function's outbound network (NAT for a function in a VPC), the upstream URL and its status; the function's log has the cause")
	case cache == "stale":
		return fail(check, "the upstream is unreachable or backing off: the mirror serves its cached copy (Warning: 110)",
			"check the function's outbound network and log; clients keep working from cache meanwhile")
	case cache == "miss" || cache == "revalidated":
		up := a.header.Get(hNamespace)
		if up == "" {
			up = "the upstream"
		}
		return pass(check, fmt.Sprintf("the mirror asked %s just now (%s: %s)", up, hCache, cache))
	case cache == "hit":
		return pass(check, "answered from cache without asking the upstream (tags are revalidated after PULLTHROUGH_MANIFEST_TTL)")
	case cache == "":
		return warn(check, fmt.Sprintf("the tag HEAD answered %d without %s", a.status, hCache),
			"not a pullthrough mirror, or something in front of it drops headers")
	}
	return pass(check, hCache+": "+cache)
}

// Rate-limit budgets worth a warning. Docker Hub gives an anonymous
// address 100 pulls in 6 hours, and a Lambda's address is shared.
const lowRateLimit = 10

// checkRateLimit reports the upstream's remaining pulls as the mirror
// passes them on (X-Pullthrough-Upstream-Ratelimit-Remaining, Docker Hub's
// "ratelimit-remaining: 76;w=21600").
func checkRateLimit(m manifests) Result {
	const check = "ratelimit"
	v := m.head.header.Get(hRateLimit)
	if v == "" {
		v = m.get.header.Get(hRateLimit)
	}
	if v == "" {
		return pass(check, "no upstream answer in this run reported a rate limit (answered from cache, or an upstream without one)")
	}
	n, window, _ := strings.Cut(v, ";")
	left, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil {
		return warn(check, "unreadable "+hRateLimit+": "+v, "")
	}
	per := ""
	if w, ok := strings.CutPrefix(strings.TrimSpace(window), "w="); ok {
		if s, err := strconv.Atoi(w); err == nil {
			per = " per " + (time.Duration(s) * time.Second).String()
		}
	}
	detail := fmt.Sprintf("the upstream has %d pulls left%s for the mirror's address", left, per)
	switch {
	case left <= 0:
		return fail(check, detail+": cold pulls will fail with 429 until the window passes",
			"give the mirror upstream credentials (PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET); warm pulls keep working from cache")
	case left < lowRateLimit:
		return warn(check, detail, "give the mirror upstream credentials (PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET) before the budget runs out")
	}
	return pass(check, detail)
}
