package doctor

import (
	"context"
	"fmt"
	"net/http"
)

// checkBase pings /v2/ as every client does first, anonymously and then
// with the given credentials, and says whether the mirror answers like a
// registry and whom it lets in. It reports false when the mirror cannot be
// reached at all, which makes every other check pointless.
func (d *doctor) checkBase(ctx context.Context) ([]Result, bool) {
	const api, access = "registry-api", "access"
	anon := d.call(ctx, http.MethodGet, "/v2/", "", false, nil)
	if anon.err != nil {
		return []Result{fail(api, "GET /v2/ failed: "+anon.err.Error(),
			"check the URL and that this machine can reach it (function URL auth type NONE, network path)")}, false
	}
	creds := d.opts.Token != "" || d.opts.Username != ""
	authed := anon
	if creds {
		authed = d.call(ctx, http.MethodGet, "/v2/", "", true, nil)
		if authed.err != nil {
			authed = anon
		}
	}
	return []Result{apiResult(api, authed), accessResult(access, anon, authed, creds)}, true
}

// apiResult judges the /v2/ answer: a registry answers 200 with
// Docker-Distribution-API-Version: registry/2.0, or 401 with a challenge
// (OCI distribution spec, "end-1"; Docker's ping reads the challenge).
func apiResult(check string, a answer) Result {
	v := a.header.Get("Docker-Distribution-API-Version")
	switch {
	case a.status == http.StatusOK && v == "registry/2.0":
		return pass(check, "GET /v2/ answered 200 with Docker-Distribution-API-Version: registry/2.0")
	case a.status == http.StatusUnauthorized && a.header.Get("WWW-Authenticate") != "":
		return pass(check, "GET /v2/ asks for credentials like a registry (401 with WWW-Authenticate)")
	case a.status == http.StatusOK:
		return fail(check, "GET /v2/ answered 200 without Docker-Distribution-API-Version: registry/2.0: not a registry API",
			"point clients at the mirror's base URL (no path), and check that nothing in front of the function rewrites answers")
	default:
		return fail(check, fmt.Sprintf("GET /v2/ answered %s: clients treat the mirror as down", a.summary()),
			"point clients at the mirror's base URL; a 404 or 403 here usually means another service at that address")
	}
}

// accessResult says whether anonymous clients are let in and whether the
// given credentials work, as the mirror's access settings decide
// (PULLTHROUGH_CLIENT_TOKENS, _USERS, _CIDRS: internal/proxy/access.go).
func accessResult(check string, anon, authed answer, creds bool) Result {
	challenge := anon.header.Get("WWW-Authenticate")
	switch {
	case anon.status == http.StatusOK && creds:
		return pass(check, "anonymous clients are let in (the mirror requires no credentials; the given ones are not needed)")
	case anon.status == http.StatusOK:
		return pass(check, "anonymous clients are let in (no client credentials configured)")
	case anon.status == http.StatusForbidden:
		return fail(check, "this machine's address is refused (403 "+anon.code()+")",
			"add this network to PULLTHROUGH_CLIENT_CIDRS, or run doctor from a client's network")
	case anon.status != http.StatusUnauthorized:
		return fail(check, "GET /v2/ answered "+anon.summary()+": cannot tell whom the mirror lets in", "see registry-api")
	case challenge == "":
		return fail(check, "anonymous clients get 401 without WWW-Authenticate: Docker cannot log in to such a mirror",
			"the mirror's 401 must carry a challenge (pullthrough sends Basic realm=\"pullthrough\")")
	case !creds:
		return fail(check, "anonymous clients are refused (401, WWW-Authenticate: "+challenge+")",
			"pass --token or --user USER:PASS (PULLTHROUGH_CLIENT_TOKENS / PULLTHROUGH_CLIENT_USERS), and give clients the same: docker login, or an Authorization header in containerd's hosts.toml")
	case authed.status == http.StatusOK:
		return pass(check, "anonymous clients are refused (401); the given credentials are accepted")
	default:
		return fail(check, "anonymous clients are refused and the given credentials too ("+authed.summary()+")",
			"check the token or user:password against PULLTHROUGH_CLIENT_TOKENS / PULLTHROUGH_CLIENT_USERS")
	}
}
