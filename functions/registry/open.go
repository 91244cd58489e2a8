package main

import (
	"fmt"
	"net"
	"strings"
)

// An open mirror is one that anyone who reaches it can pull through at the
// operator's expense: no client credentials and no client CIDRs. Client
// credentials are client tokens or users, from the variables or the
// credentials secret's "clients"; upstream credentials in that secret are
// not (they protect nothing, and spend the operator's upstream quota for
// anyone). Terraform's open-mirror guard (infra/terraform, variable
// allow_public_access) is the same rule: it cannot read the secret at plan
// time, so it passes its choice on as PULLTHROUGH_ALLOW_OPEN, and the
// binary, which has read the secret, decides.
//
// Being open must be chosen: PULLTHROUGH_ALLOW_OPEN=true, or, for the
// local server, listening on a loopback address only (the default
// 127.0.0.1:5000), where only this machine can reach it. A function URL is
// always reachable from the internet.

// refuseOpen reports a mirror that would start open without that choice.
func refuseOpen(c Config) error {
	a := c.Proxy.Access
	if len(a.Tokens) > 0 || len(a.Users) > 0 || len(a.CIDRs) > 0 || c.AllowOpen {
		return nil
	}
	if !c.Lambda && loopbackAddr(c.Addr) {
		return nil
	}
	where := "a Lambda function URL is reachable from the internet"
	if !c.Lambda {
		where = fmt.Sprintf("PULLTHROUGH_ADDR %s is not a loopback address", c.Addr)
	}
	secret := ""
	if c.CredentialsSecret != "" {
		secret = "; the credentials secret holds no clients, and upstream credentials do not protect the mirror"
	}
	return fmt.Errorf("PULLTHROUGH_ALLOW_OPEN: the mirror would be open to anyone who reaches it (%s): it has no client credentials (PULLTHROUGH_CLIENT_TOKENS, PULLTHROUGH_CLIENT_USERS, the credentials secret's clients) and no PULLTHROUGH_CLIENT_CIDRS%s; set one of them, or PULLTHROUGH_ALLOW_OPEN=true (Terraform: allow_public_access = true) to accept that", where, secret)
}

// loopbackAddr reports whether a listen address binds only loopback
// interfaces: "localhost" or a loopback IP. An empty host (":5000") binds
// every interface.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
