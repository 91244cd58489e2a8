package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/lambdaharness"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// A store the mirror cannot use stops it at start, in one line with the
// store's own reason, instead of a server that says "listening" and
// answers every pull with 503 (which clients then bypass silently).
func TestBrokenStoreStopsTheMirror(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the mirror binary against versitygw")
	}
	s3 := testenv.StartS3(t)
	dead := "http://" + testenv.FreeAddr(t)
	addr := testenv.FreeAddr(t)
	with := func(env []string, kv ...string) []string {
		out := slices.Clone(env)
		for _, one := range kv {
			k, _, _ := strings.Cut(one, "=")
			out = slices.DeleteFunc(out, func(e string) bool { return strings.HasPrefix(e, k+"=") })
			out = append(out, one)
		}
		return append(out, "PULLTHROUGH_ADDR="+addr, "PULLTHROUGH_UPSTREAM="+dead)
	}
	unwritable, cred := unwritableDir(t)
	newer := t.TempDir() // a store a newer release wrote
	if err := os.WriteFile(filepath.Join(newer, "layout.json"), []byte(`{"version":99,"written_by":"v9.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  []string
		cred *syscall.Credential
		want []string // in the one line
	}{
		{"no such bucket", with(s3.Env(""), "PULLTHROUGH_STORE=s3://no-such-bucket"), nil, []string{"store s3://no-such-bucket", "PutObject", "404 NoSuchBucket"}},
		{"wrong secret key", with(s3.Env("cache"), "AWS_SECRET_ACCESS_KEY=not-the-secret-key"), nil, []string{"store s3://mirror/cache", "403 SignatureDoesNotMatch"}},
		{"dead endpoint", with(s3.Env(""), "AWS_ENDPOINT_URL_S3="+dead), nil, []string{"store s3://mirror", dead, "connection refused"}},
		{"unwritable directory", with(nil, "PULLTHROUGH_STORE=file://"+unwritable), cred, []string{"store file://" + unwritable, "cannot write", "permission denied"}},
		{"written by a newer release", with(nil, "PULLTHROUGH_STORE=file://"+newer), nil, []string{"layout 99", "v9.0.0", "run a newer release"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, stderr, code := runMirrorAs(t, tc.cred, tc.env)
			if code != 1 {
				t.Fatalf("got exit status %d, want 1 (-1: still running after 10s)\nstderr: %s", code, stderr)
			}
			t.Logf("exited after %s", time.Since(start).Round(time.Millisecond))
			var last string
			for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
				if !strings.HasPrefix(line, "{") { // the JSON log lines before it
					if last != "" {
						t.Errorf("got a second plain line %q after %q, want one", line, last)
					}
					last = line
				}
			}
			if !strings.HasPrefix(last, "pullthrough: ") {
				t.Fatalf("got stderr %q, want a line starting pullthrough:", stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(last, w) {
					t.Errorf("got %q, want it to contain %q", last, w)
				}
			}
			if strings.Contains(stderr, s3.Secret) || strings.Contains(stderr, "not-the-secret-key") {
				t.Errorf("got stderr %q, which holds a secret key", stderr)
			}
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				t.Errorf("something listens on %s, want nothing", addr)
			}
		})
	}
}

// unwritableDir is a store directory the mirror may open but not write
// in, as after a chown or a read-only remount: its .uploads exists, so
// opening it creates nothing. Root writes anywhere, so as root the mirror
// runs as nobody.
func unwritableDir(t *testing.T) (string, *syscall.Credential) {
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.MkdirAll(filepath.Join(dir, ".uploads"), 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		os.Chmod(filepath.Join(dir, ".uploads"), 0o555)
		os.Chmod(dir, 0o555)
		t.Cleanup(func() { os.Chmod(dir, 0o755); os.Chmod(filepath.Join(dir, ".uploads"), 0o755) })
		return dir, nil
	}
	// nobody must reach the binary and the directory: open the path to them.
	for _, p := range []string{filepath.Dir(testenv.BuildMirror(t, false)), filepath.Dir(dir), filepath.Dir(filepath.Dir(dir))} {
		os.Chmod(p, 0o755)
	}
	return dir, &syscall.Credential{Uid: 65534, Gid: 65534}
}

// An upstream that does not answer at start is a loud warning, not a
// failure: it may be down for now, and the cache is served meanwhile.
func TestUnreachableUpstreamWarnsAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the mirror binary")
	}
	reg := testenv.DistributionRegistry(t)
	dead := "http://" + testenv.FreeAddr(t)
	_, proc := testenv.StartMirror(t, testenv.BuildMirror(t, false),
		"PULLTHROUGH_STORE=file://"+t.TempDir(),
		"PULLTHROUGH_UPSTREAMS=up.test="+reg.String()+",down.test="+dead,
	)
	var warned []string
	for _, line := range strings.Split(proc.Output(), "\n") {
		var l struct{ Level, Msg, Upstream, URL, Error string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Level == "WARN" && strings.Contains(l.Msg, "UNREACHABLE") {
			warned = append(warned, l.Upstream)
			if l.URL != dead || !strings.Contains(l.Error, "connection refused") {
				t.Errorf("got warning url %q error %q, want %s and connection refused", l.URL, l.Error, dead)
			}
		}
	}
	if !slices.Equal(warned, []string{"down.test"}) {
		t.Errorf("got start warnings for %v, want [down.test]\n%s", warned, proc.Output())
	}
}

// The start line shows the effective configuration, so that a typo is
// visible there, and no secret.
func TestStartLineShowsTheConfiguration(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the mirror binary against versitygw")
	}
	s3 := testenv.StartS3(t)
	reg := testenv.DistributionRegistry(t)
	_, proc := testenv.StartMirror(t, testenv.BuildMirror(t, false), append(s3.Env("cache"),
		"PULLTHROUGH_UPSTREAMS=docker.io="+reg.String()+",ghcr.io="+reg.String(),
		"PULLTHROUGH_DEFAULT_UPSTREAM=ghcr.io",
		"PULLTHROUGH_UPSTREAM_GHCR_IO_TOKEN=upstream-token-value",
		"PULLTHROUGH_CLIENT_TOKENS=client-token-1,client-token-2",
		"PULLTHROUGH_CLIENT_CIDRS=127.0.0.0/8",
		"PULLTHROUGH_HOSTS=localhost,mirror.internal",
		"PULLTHROUGH_LARGE_BLOB_POLICY=wait",
	)...)
	var line struct {
		Msg   string
		Store struct {
			URL, Endpoint string
			PathStyle     bool `json:"path_style"`
		}
		Upstreams   map[string]string
		Credentials map[string]string `json:"upstream_credentials"`
		Default     string            `json:"default_upstream"`
		Hosts       []string
		Access      struct {
			Mode                 string
			Tokens, Users, CIDRs int
		}
		Fill struct {
			Policy string `json:"large_blob_policy"`
		}
	}
	var raw string
	for _, l := range strings.Split(proc.Output(), "\n") {
		if strings.Contains(l, `"msg":"starting"`) {
			raw = l
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	if raw == "" {
		t.Fatalf("no start line in\n%s", proc.Output())
	}
	t.Log(raw)
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"store", line.Store.URL, "s3://mirror/cache"},
		{"S3 endpoint", line.Store.Endpoint, s3.Endpoint},
		{"path style", line.Store.PathStyle, true},
		{"upstreams", len(line.Upstreams), 2},
		{"ghcr.io upstream", line.Upstreams["ghcr.io"], reg.String()},
		{"upstream credentials", line.Credentials["ghcr.io"], "token"},
		{"default upstream", line.Default, "ghcr.io"},
		{"hosts", strings.Join(line.Hosts, ","), "localhost,mirror.internal"},
		{"access mode", line.Access.Mode, "tokens+cidrs"},
		{"client tokens", line.Access.Tokens, 2},
		{"client CIDRs", line.Access.CIDRs, 1},
		{"fill policy", line.Fill.Policy, "wait"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.what, c.got, c.want)
		}
	}
	for _, secret := range []string{"upstream-token-value", "client-token-1", "client-token-2", s3.Secret, "127.0.0.0/8"} {
		if strings.Contains(proc.Output(), secret) {
			t.Errorf("the mirror's output holds %q", secret)
		}
	}
}

// In Lambda the same checks run at init, and a failure is the function's
// init error: an invocation is answered with the store's reason.
func TestLambdaInitFailsOnABrokenStore(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the Lambda bootstrap against versitygw")
	}
	s3 := testenv.StartS3(t)
	h, err := lambdaharness.New(lambdaharness.Options{FunctionName: "pullthrough"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	env := append(s3.Env(""), "PULLTHROUGH_STORE=s3://no-such-bucket", "PULLTHROUGH_UPSTREAM=http://"+testenv.FreeAddr(t),
		"AWS_LAMBDA_RUNTIME_API="+h.RuntimeAPI(), "AWS_LAMBDA_FUNCTION_NAME=pullthrough", "PULLTHROUGH_ALLOW_OPEN=true")
	testenv.Start(t, env, testenv.BuildMirror(t, true))
	client := &http.Client{Timeout: 20 * time.Second}
	resp, err := client.Post(h.InvokeEndpoint()+"/2015-03-31/functions/pullthrough/invocations", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var doc struct{ ErrorType, ErrorMessage string }
	json.Unmarshal(body, &doc)
	if resp.Header.Get("X-Amz-Function-Error") == "" || doc.ErrorType != "pullthrough.StartupError" || !strings.Contains(doc.ErrorMessage, "NoSuchBucket") {
		t.Errorf("got function error %q, payload %s; want a pullthrough.StartupError naming NoSuchBucket", resp.Header.Get("X-Amz-Function-Error"), body)
	}
	if resp, err := client.Get(h.URL() + "/v2/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("function URL after a failed init: got %d, want 502", resp.StatusCode)
		}
	}
}
