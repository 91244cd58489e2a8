package main

import (
	"strings"
	"testing"

	"github.com/pullthrough/pullthrough/internal/testenv"
)

// TestOpenMirrorNeedsAChoice: a mirror with no client credentials and no
// client CIDRs starts only where openness was chosen: PULLTHROUGH_ALLOW_OPEN,
// or a local server on loopback only (make run's zero configuration). A
// credentials secret that holds only upstream credentials is not client
// credentials (the case Terraform's guard let through).
func TestOpenMirrorNeedsAChoice(t *testing.T) {
	lambda := map[string]string{"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001", "PULLTHROUGH_STORE": "s3://my-bucket"}
	with := func(base map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range base {
			out[k] = v
		}
		for _, one := range kv {
			k, v, _ := strings.Cut(one, "=")
			out[k] = v
		}
		return out
	}
	local := map[string]string{"PULLTHROUGH_STORE": "file:///tmp/pullthrough-test"}
	upstreamOnly := `{"upstreams":{"docker.io":{"username":"u","password":"p"}}}`
	withClients := `{"clients":{"tokens":["t0ken"]}}`
	for _, tc := range []struct {
		name   string
		vars   map[string]string
		secret string // the credentials secret's JSON, if any
		want   []string
	}{
		{"local, zero configuration", map[string]string{}, "", nil},
		{"local on 127.0.0.1", with(local, "PULLTHROUGH_ADDR=127.0.0.1:5000"), "", nil},
		{"local on ::1", with(local, "PULLTHROUGH_ADDR=[::1]:5000"), "", nil},
		{"local on localhost", with(local, "PULLTHROUGH_ADDR=localhost:5000"), "", nil},
		{"local on every interface", with(local, "PULLTHROUGH_ADDR=0.0.0.0:5000"), "", []string{"PULLTHROUGH_ALLOW_OPEN", "0.0.0.0:5000 is not a loopback address"}},
		{"local on every interface, no host", with(local, "PULLTHROUGH_ADDR=:5000"), "", []string{"PULLTHROUGH_ALLOW_OPEN", ":5000 is not a loopback address"}},
		{"local on a LAN address", with(local, "PULLTHROUGH_ADDR=192.168.1.10:5000"), "", []string{"192.168.1.10:5000 is not a loopback address"}},
		{"local open, chosen", with(local, "PULLTHROUGH_ADDR=0.0.0.0:5000", "PULLTHROUGH_ALLOW_OPEN=true"), "", nil},
		{"local with client tokens", with(local, "PULLTHROUGH_ADDR=0.0.0.0:5000", "PULLTHROUGH_CLIENT_TOKENS=t0ken"), "", nil},
		{"local with client users", with(local, "PULLTHROUGH_ADDR=0.0.0.0:5000", "PULLTHROUGH_CLIENT_USERS=ci:pw"), "", nil},
		{"local with client CIDRs", with(local, "PULLTHROUGH_ADDR=0.0.0.0:5000", "PULLTHROUGH_CLIENT_CIDRS=10.0.0.0/8"), "", nil},
		{"lambda, nothing", lambda, "", []string{"PULLTHROUGH_ALLOW_OPEN", "function URL is reachable from the internet"}},
		{"lambda, open chosen", with(lambda, "PULLTHROUGH_ALLOW_OPEN=true"), "", nil},
		{"lambda, CIDRs", with(lambda, "PULLTHROUGH_CLIENT_CIDRS=203.0.113.7"), "", nil},
		{"lambda, secret with upstream credentials only", with(lambda, "PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET=s"), upstreamOnly, []string{"PULLTHROUGH_ALLOW_OPEN", "the credentials secret holds no clients"}},
		{"lambda, secret with client tokens", with(lambda, "PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET=s"), withClients, nil},
		{"lambda, open set to false", with(lambda, "PULLTHROUGH_ALLOW_OPEN=false"), "", []string{"PULLTHROUGH_ALLOW_OPEN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConfig(tc.vars)
			if err != nil {
				t.Fatalf("parseConfig: %v", err)
			}
			if tc.secret != "" {
				if err := applySecret(&c, []byte(tc.secret)); err != nil {
					t.Fatalf("applySecret: %v", err)
				}
			}
			wantRefusal(t, refuseOpen(c), tc.want)
		})
	}
}

// TestOpenMirrorRefusedAtStart: the binary on every interface without
// client credentials exits at start with the reason, listening nowhere.
func TestOpenMirrorRefusedAtStart(t *testing.T) {
	port := testenv.FreeAddr(t)[len("127.0.0.1:"):]
	_, stderr, code := runMirrorAs(t, nil, []string{"PULLTHROUGH_ADDR=0.0.0.0:" + port, "PULLTHROUGH_STORE=file://" + t.TempDir(), "PULLTHROUGH_UPSTREAM=http://" + testenv.FreeAddr(t)})
	if code != 1 {
		t.Fatalf("got exit status %d, want 1\nstderr: %s", code, stderr)
	}
	if !strings.Contains(stderr, "PULLTHROUGH_ALLOW_OPEN: the mirror would be open") {
		t.Errorf("got stderr %q, want the open-mirror refusal", stderr)
	}
}

// TestCollidingUpstreamVariablesRefused: two upstream hosts that map to one
// PULLTHROUGH_UPSTREAM_<HOST>_* name are refused, naming both, whether or
// not any of those variables is set: otherwise the look-alike host reads
// the other's credentials.
func TestCollidingUpstreamVariablesRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		vars map[string]string
		want []string // nil: accepted
	}{
		{"dot and dash", map[string]string{"PULLTHROUGH_UPSTREAMS": "registry.corp.example,registry-corp.example"},
			[]string{`"registry.corp.example"`, `"registry-corp.example"`, "PULLTHROUGH_UPSTREAM_REGISTRY_CORP_EXAMPLE_*"}},
		{"with credentials set", map[string]string{"PULLTHROUGH_UPSTREAMS": "registry-corp.example,docker.io,registry.corp.example",
			"PULLTHROUGH_UPSTREAM_REGISTRY_CORP_EXAMPLE_PASSWORD": "pw", "PULLTHROUGH_UPSTREAM_REGISTRY_CORP_EXAMPLE_USERNAME": "u"},
			[]string{`"registry-corp.example"`, `"registry.corp.example"`}},
		{"port and underscore-free look-alike", map[string]string{"PULLTHROUGH_UPSTREAMS": "r.example:5000=http://127.0.0.1:5000,r.example-5000=http://127.0.0.1:5001"},
			[]string{`"r.example:5000"`, `"r.example-5000"`}},
		{"distinct keys", map[string]string{"PULLTHROUGH_UPSTREAMS": "registry.corp.example,ghcr.io,quay.io"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig(tc.vars)
			wantRefusal(t, err, tc.want)
		})
	}
}

// wantRefusal checks err against want: nil wants no error, else an error
// holding every string of want.
func wantRefusal(t *testing.T, err error, want []string) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Errorf("got %v, want no error", err)
		}
		return
	}
	if err == nil {
		t.Fatal("got no error, want a refusal")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("got %q, want it to contain %s", err, w)
		}
	}
}
