package doctor

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/opencontainers/go-digest"
)

// The three client rules below judge a tag HEAD answer (and, where the
// client falls back to it, the GET by tag) as each client's source does.
// They see answers through Go's net/http, as all three clients do: a
// chunked answer has no Content-Length, a HEAD answer keeps it.

const (
	hContentType   = "Content-Type"
	hDigest        = "Docker-Content-Digest"
	hContentLength = "Content-Length"
	// hRemapped is where a Lambda function URL in RESPONSE_STREAM mode puts
	// the Content-Length the function set (cargo-lambda/cargo-lambda#862,
	// aws/aws-lambda-go#577; API Gateway remaps the same way).
	hRemapped = "X-Amzn-Remapped-Content-Length"
)

// dockerd models how dockerd resolves a tag: moby/moby distribution/
// pull_v2.go (pullTag) calls the distribution registry client's tags.Get
// (distribution/distribution internal/client/repository.go, tags.Get and
// descriptorFromResponse; moby vendors it as docker/distribution
// registry/client). A 2xx/3xx HEAD with Docker-Content-Digest is
// final and then needs Content-Type and Content-Length ("missing or empty
// Content-Length header"); otherwise it GETs, and a GET answer with the
// digest header needs Content-Length too, one without it is parsed.
// On failure dockerd logs "Attempting next endpoint" and pulls from the
// upstream registry instead of the mirror.
func dockerd(head, get answer) (bool, string) {
	if head.err == nil && head.status >= 200 && head.status < 400 && head.header.Get(hDigest) != "" {
		if m := missing(head.header, hContentType, hContentLength); m != "" {
			return false, "HEAD has Docker-Content-Digest but lacks " + m + ": dockerd refuses it and pulls from the upstream instead"
		}
		if _, err := digest.Parse(head.header.Get(hDigest)); err != nil {
			return false, "HEAD has an invalid Docker-Content-Digest"
		}
		return true, "HEAD has Content-Type, Docker-Content-Digest and Content-Length"
	}
	why := "HEAD answered " + head.summary()
	if head.err == nil && head.status < 400 {
		why = "HEAD lacks Docker-Content-Digest"
	}
	switch {
	case get.err != nil:
		return false, why + "; the GET it falls back to failed: " + get.err.Error()
	case get.status < 200 || get.status >= 400:
		return false, why + "; the GET it falls back to answered " + get.summary()
	case get.header.Get(hContentType) == "":
		return false, why + "; the GET it falls back to lacks Content-Type"
	case get.header.Get(hDigest) != "" && get.header.Get(hContentLength) == "":
		return false, why + "; the GET it falls back to has Docker-Content-Digest but no Content-Length (chunked): dockerd refuses it and pulls from the upstream instead"
	case get.header.Get(hDigest) == "" && !json.Valid(get.body):
		return false, why + "; the GET it falls back to has no digest and a body that is not a manifest"
	}
	return true, why + "; dockerd falls back to GET, which it accepts (one more manifest GET per pull)"
}

// containerd models containerd's resolver (containerd/containerd
// core/remotes/docker/resolver.go, Resolve): a HEAD answered 405 is retried
// as GET, other answers above 299 fail the host; a HEAD with
// Docker-Content-Digest and a known length is final; otherwise it GETs the
// manifest and hashes the body, so headers do not matter there.
func containerd(head, get answer) (bool, string) {
	why := ""
	switch {
	case head.err != nil:
		return false, "HEAD failed: " + head.err.Error() + "; containerd tries the next host (the upstream)"
	case head.status == http.StatusMethodNotAllowed:
		why = "HEAD answered 405"
	case head.status > 299:
		return false, "HEAD answered " + head.summary() + "; containerd tries the next host (the upstream)"
	case head.header.Get(hDigest) != "" && head.length != -1:
		return true, "HEAD has Docker-Content-Digest and Content-Length"
	default:
		why = "HEAD lacks " + missingLength(head)
	}
	if get.err != nil || get.status > 299 {
		return false, why + "; the GET it falls back to answered " + get.summary()
	}
	return true, why + "; containerd falls back to GET and hashes the body (one more manifest GET per pull)"
}

// ggcr models go-containerregistry's remote.Head (pkg/v1/remote/
// fetcher.go, headManifest), which crane digest and many tools call: it
// wants exactly 200 with Content-Type, a known Content-Length and
// Docker-Content-Digest, and has no fallback of its own.
func ggcr(head answer) (bool, string) {
	if head.err != nil || head.status != http.StatusOK {
		return false, "HEAD answered " + head.summary()
	}
	m := missing(head.header, hContentType, hDigest)
	if head.length == -1 {
		if m != "" {
			m += ", "
		}
		m += hContentLength
	}
	if m != "" {
		return false, "HEAD lacks " + m + ": remote.Head fails"
	}
	if _, err := digest.Parse(head.header.Get(hDigest)); err != nil {
		return false, "HEAD has an invalid Docker-Content-Digest"
	}
	return true, "HEAD has Content-Type, Docker-Content-Digest and Content-Length"
}

func missingLength(a answer) string {
	m := missing(a.header, hDigest)
	if a.length == -1 {
		if m != "" {
			m += " and "
		}
		m += hContentLength
	}
	return m
}

// clientResults turns the three rules into results.
func clientResults(head, get answer) []Result {
	fix := "; answer manifest HEADs so every client can use them: with Content-Length, or " +
		"(where a front end such as a Lambda function URL in RESPONSE_STREAM mode cannot send it) without Docker-Content-Digest"
	if head.err != nil || head.status >= 400 {
		fix = "; see the access, manifest-get-tag and upstream checks"
	}
	dOK, dWhy := dockerd(head, get)
	cOK, cWhy := containerd(head, get)
	gOK, gWhy := ggcr(head)
	return []Result{
		judge("head-dockerd", dOK, dWhy, "dockerd pulls from the upstream instead and logs \"Attempting next endpoint\""+fix),
		judge("head-containerd", cOK, cWhy, "containerd tries the next host in hosts.toml (usually the upstream)"+fix),
		ggcrResult(head, get, gOK, gWhy, fix),
		remappedResult(head, get),
	}
}

// ggcrResult is a warning, not a failure, for a HEAD that leaves the digest
// out on purpose (a mirror behind a front end that drops Content-Length):
// crane digest (pkg/crane/digest.go) and remote.Get-based pulls fall back to
// GET and work; only tools that call remote.Head alone fail.
func ggcrResult(head, get answer, ok bool, why, fix string) Result {
	const check = "head-ggcr"
	if !ok && head.err == nil && head.status == http.StatusOK && head.header.Get(hDigest) == "" &&
		get.err == nil && get.status == http.StatusOK && json.Valid(get.body) {
		return warn(check, why+"; crane digest and crane pull fall back to GET and work",
			"tools that call go-containerregistry's remote.Head alone fail on this mirror; expected behind a Lambda function URL")
	}
	return judge(check, ok, why, "crane digest and tools built on go-containerregistry's remote.Head fail"+fix)
}

func judge(check string, ok bool, detail, hint string) Result {
	if ok {
		return pass(check, detail)
	}
	return fail(check, detail, hint)
}

// remappedResult explains x-amzn-Remapped-Content-Length when it shows up.
func remappedResult(head, get answer) Result {
	const check = "remapped-length"
	for _, a := range []struct {
		method string
		answer
	}{{"HEAD", head}, {"GET", get}} {
		if v := a.header.Get(hRemapped); v != "" {
			has := "and no Content-Length"
			if a.header.Get(hContentLength) != "" {
				has = "and a Content-Length too"
			}
			return warn(check, fmt.Sprintf("the %s answer has x-amzn-Remapped-Content-Length: %s %s: the function URL (RESPONSE_STREAM) renamed the length the mirror set", a.method, v, has),
				"expected behind a Lambda function URL in RESPONSE_STREAM mode (cargo-lambda/cargo-lambda#862, aws/aws-lambda-go#577); clients never read the renamed header, so see the head-* checks for what they do without it")
		}
	}
	return pass(check, "no x-amzn-Remapped-Content-Length: lengths reach clients as the mirror set them")
}
