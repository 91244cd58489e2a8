package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pullthrough/pullthrough/internal/doctor"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// runDoctor runs the real binary's doctor subcommand and returns its
// results and exit status.
func runDoctor(t *testing.T, env []string, args ...string) ([]doctor.Result, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.BuildMirror(t, false), append([]string{"doctor", "--json"}, args...)...)
	// A minimal environment, as testenv.Start gives: the host's settings
	// (a PULLTHROUGH_DOCTOR_TOKEN, say) never leak in.
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var rs []doctor.Result
	if err := json.Unmarshal(stdout.Bytes(), &rs); err != nil {
		t.Fatalf("doctor --json printed no JSON array (%v):\n%s\n%s", err, stdout.String(), stderr.String())
	}
	return rs, code
}

func statusOf(rs []doctor.Result, check string) (doctor.Result, bool) {
	for _, r := range rs {
		if r.Check == check {
			return r, true
		}
	}
	return doctor.Result{}, false
}

func dump(rs []doctor.Result) string {
	var b strings.Builder
	doctor.Write(&b, rs, false)
	return b.String()
}

// doctorStack is a good mirror (the local server over the distribution
// registry as its docker.io and versitygw) with the default image seeded.
func doctorStack(t *testing.T) (*stack, string) {
	t.Helper()
	s := newStack(t)
	testenv.SeedImage(t, s.reg, doctor.DefaultImage, 32<<10, 2)
	mirror, _ := testenv.StartMirror(t, testenv.BuildMirror(t, false), s.env("PULLTHROUGH_UPSTREAMS=docker.io="+s.up.URL.String())...)
	return s, mirror
}

// Against a healthy mirror every check passes, the binary exits 0, and the
// upstream's rate-limit budget reaches doctor through the mirror.
func TestDoctorPassesOnAGoodMirror(t *testing.T) {
	s, mirror := doctorStack(t)
	s.up.SetHeader("Ratelimit-Remaining", "76;w=21600")
	rs, code := runDoctor(t, nil, mirror)
	if code != 0 || doctor.Failures(rs) != 0 {
		t.Fatalf("got exit %d, want 0:\n%s", code, dump(rs))
	}
	for _, r := range rs {
		if r.Status != doctor.Pass {
			t.Errorf("got %s %s (%s), want PASS", r.Status, r.Check, r.Detail)
		}
	}
	for check, says := range map[string]string{
		"head-dockerd": "Content-Length", "blob": "307 to http://127.0.0.1", "ns:docker.io": "routed to docker.io",
		"ns:unknown": "refused", "upstream": "miss", "ratelimit": "76 pulls left per 6h0m0s", "clock": "presigned URL",
	} {
		if r, ok := statusOf(rs, check); !ok || !strings.Contains(r.Detail, says) {
			t.Errorf("%s: got %q, want it to say %q", check, r.Detail, says)
		}
	}
	if r, _ := statusOf(rs, "blob"); strings.Contains(r.Detail, "X-Amz") {
		t.Errorf("blob detail leaks the presigned query: %s", r.Detail)
	}

	// Without --json: one "STATUS  check  detail" line per check.
	out, err := exec.Command(testenv.BuildMirror(t, false), "doctor", mirror).Output()
	if err != nil {
		t.Fatalf("doctor: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(rs) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(rs), out)
	}
	for i, l := range lines {
		if f := strings.Fields(l); len(f) < 3 || f[0] != "PASS" || f[1] != rs[i].Check {
			t.Errorf("line %d: got %q, want PASS  %s  ...", i, l, rs[i].Check)
		}
	}
}

// A mirror that refuses anonymous clients is a FAIL without credentials and
// a PASS with the token, given the way users give it (environment).
func TestDoctorOnAMirrorThatRequiresCredentials(t *testing.T) {
	s := newStack(t)
	testenv.SeedImage(t, s.reg, doctor.DefaultImage, 16<<10, 1)
	mirror, _ := testenv.StartMirror(t, testenv.BuildMirror(t, false),
		s.env("PULLTHROUGH_UPSTREAMS=docker.io="+s.up.URL.String(), "PULLTHROUGH_CLIENT_TOKENS=sesame", "PULLTHROUGH_CLIENT_USERS=alice:wonder")...)

	rs, code := runDoctor(t, nil, mirror)
	if r, _ := statusOf(rs, "access"); code == 0 || r.Status != doctor.Fail || !strings.Contains(r.Detail, "anonymous clients are refused") {
		t.Fatalf("anonymous: got exit %d and access %s %q, want non-zero and FAIL:\n%s", code, r.Status, r.Detail, dump(rs))
	}
	rs, code = runDoctor(t, []string{"PULLTHROUGH_DOCTOR_TOKEN=sesame"}, mirror)
	if code != 0 {
		t.Fatalf("with the token: got exit %d, want 0:\n%s", code, dump(rs))
	}
	if r, _ := statusOf(rs, "access"); !strings.Contains(r.Detail, "given credentials are accepted") {
		t.Errorf("with the token: got access %q", r.Detail)
	}
	if rs, code = runDoctor(t, nil, "--user", "alice:wonder", mirror); code != 0 {
		t.Errorf("with basic credentials: got exit %d, want 0:\n%s", code, dump(rs))
	}
	rs, _ = runDoctor(t, nil, "--user", "alice:wrong", mirror)
	if r, _ := statusOf(rs, "access"); r.Status != doctor.Fail || strings.Contains(dump(rs), "wrong") {
		t.Errorf("with a wrong password: got access %s %q (and the password must never be printed)", r.Status, r.Detail)
	}
}

// front is a reverse proxy in test code in front of a good mirror that
// breaks one thing, the way a misconfigured front end or store would.
type front struct {
	intercept func(w http.ResponseWriter, r *http.Request) bool
	director  func(r *http.Request)
	modify    func(resp *http.Response) error
	stream    bool // flush every write: answers go out chunked
}

func (f front) start(t *testing.T, mirror string) string {
	t.Helper()
	target, _ := url.Parse(mirror)
	rp := httputil.NewSingleHostReverseProxy(target)
	if f.director != nil {
		base := rp.Director
		rp.Director = func(r *http.Request) { base(r); f.director(r) }
	}
	rp.ModifyResponse = f.modify
	if f.stream {
		rp.FlushInterval = -1
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			t.Errorf("doctor sent %s %s: it must only read", r.Method, r.URL.Path)
		}
		if f.intercept != nil && f.intercept(w, r) {
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func isManifest(resp *http.Response) bool {
	return strings.Contains(resp.Request.URL.Path, "/manifests/") && resp.StatusCode == http.StatusOK
}

// flip changes one byte of a body and keeps its length.
func flip(resp *http.Response) error {
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if len(b) > 0 {
		b[len(b)/2] ^= 0xff
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
	return nil
}

// redirected rewrites the Location of a blob redirect.
func redirected(fn func(loc *url.URL)) func(*http.Response) error {
	return func(resp *http.Response) error {
		if resp.StatusCode == http.StatusTemporaryRedirect {
			loc, err := url.Parse(resp.Header.Get("Location"))
			if err != nil {
				return err
			}
			fn(loc)
			resp.Header.Set("Location", loc.String())
		}
		return nil
	}
}

// remapsLength is what a Lambda function URL in RESPONSE_STREAM mode is
// reported to do (cargo-lambda/cargo-lambda#862, aws/aws-lambda-go#577):
// the function's Content-Length reaches the client renamed, and bodies are
// streamed (chunked).
var remapsLength = front{stream: true, modify: func(resp *http.Response) error {
	if n := resp.Header.Get("Content-Length"); n != "" {
		resp.Header.Set("X-Amzn-Remapped-Content-Length", n)
		resp.Header.Del("Content-Length")
		resp.ContentLength = -1
	}
	return nil
}}

// Each check fails against a mirror broken in the way it is there to see.
func TestDoctorFailsOnBrokenMirrors(t *testing.T) {
	s, mirror := doctorStack(t)
	if rs, err := doctor.Run(testenv.Ctx(t), doctor.Options{Mirror: mirror}); err != nil || doctor.Failures(rs) != 0 {
		t.Fatalf("the good mirror fails (%v):\n%s", err, dump(rs)) // and fills the cache for the fronts
	}
	dead := "127.0.0.1:" + strings.Split(testenv.FreeAddr(t), ":")[1]

	seen, ran := map[string]doctor.Status{}, 0
	cases := []struct {
		name  string
		front front
		image string
		fault func() (undo func())
		want  map[string]doctor.Status
	}{
		{name: "refuses /v2/", front: front{intercept: func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path == "/v2/" {
				http.Error(w, "not here", http.StatusNotFound)
				return true
			}
			return false
		}}, want: map[string]doctor.Status{"registry-api": doctor.Fail, "access": doctor.Fail}},
		{name: "answers /v2/ without the API version", front: front{modify: func(resp *http.Response) error {
			resp.Header.Del("Docker-Distribution-API-Version")
			return nil
		}}, want: map[string]doctor.Status{"registry-api": doctor.Fail}},
		{name: "renames Content-Length and streams", front: remapsLength, want: map[string]doctor.Status{"head-dockerd": doctor.Fail, "head-ggcr": doctor.Fail, "head-containerd": doctor.Pass, "remapped-length": doctor.Warn}},
		{name: "drops Docker-Content-Digest and streams", front: front{stream: true, modify: func(resp *http.Response) error {
			if isManifest(resp) {
				resp.Header.Del("Docker-Content-Digest")
				resp.Header.Del("Content-Length")
				resp.ContentLength = -1
			}
			return nil
		}}, want: map[string]doctor.Status{"head-ggcr": doctor.Warn, "head-dockerd": doctor.Pass, "head-containerd": doctor.Pass}},
		{name: "refuses manifest HEAD", front: front{intercept: func(w http.ResponseWriter, r *http.Request) bool {
			if r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/manifests/") {
				w.WriteHeader(http.StatusNotFound)
				return true
			}
			return false
		}}, want: map[string]doctor.Status{"head-containerd": doctor.Fail, "upstream": doctor.Warn}},
		{name: "answers manifest HEAD with Content-Length 0", front: front{modify: func(resp *http.Response) error {
			if isManifest(resp) && resp.Request.Method == http.MethodHead {
				resp.Header.Set("Content-Length", "0")
				resp.ContentLength = 0
			}
			return nil
		}}, want: map[string]doctor.Status{"manifest-get-tag": doctor.Fail}},
		{name: "corrupts manifests by tag", front: front{modify: func(resp *http.Response) error {
			if isManifest(resp) && !strings.Contains(resp.Request.URL.Path, "sha256:") && resp.Request.Method == http.MethodGet {
				return flip(resp)
			}
			return nil
		}}, want: map[string]doctor.Status{"manifest-get-tag": doctor.Fail}},
		{name: "corrupts manifests by digest", front: front{modify: func(resp *http.Response) error {
			if isManifest(resp) && strings.Contains(resp.Request.URL.Path, "sha256:") {
				return flip(resp)
			}
			return nil
		}}, want: map[string]doctor.Status{"manifest-get-digest": doctor.Fail}},
		{name: "corrupts blobs", front: front{modify: func(resp *http.Response) error {
			if resp.StatusCode != http.StatusTemporaryRedirect {
				return nil
			}
			got, err := http.Get(resp.Header.Get("Location"))
			if err != nil {
				return err
			}
			resp.Body.Close()
			resp.StatusCode, resp.Body = http.StatusOK, got.Body
			resp.Header.Del("Location")
			return flip(resp)
		}}, want: map[string]doctor.Status{"blob": doctor.Fail}},
		{name: "redirects blobs to a dead host", front: front{modify: redirected(func(loc *url.URL) { loc.Host = dead })},
			want: map[string]doctor.Status{"blob": doctor.Fail}},
		{name: "signs with a clock an hour ahead", front: front{modify: redirected(func(loc *url.URL) {
			q := loc.Query()
			q.Set("X-Amz-Date", time.Now().Add(time.Hour).UTC().Format("20060102T150405Z"))
			loc.RawQuery = q.Encode()
		})}, want: map[string]doctor.Status{"clock": doctor.Fail, "blob": doctor.Fail}},
		{name: "ignores ?ns=", front: front{
			director: func(r *http.Request) { r.URL.RawQuery = "" },
			modify: func(resp *http.Response) error {
				resp.Header.Del("OCI-Namespace")
				return nil
			},
		}, want: map[string]doctor.Status{"ns:docker.io": doctor.Fail, "ns:unknown": doctor.Fail}},
		{name: "denies anonymous clients", front: front{intercept: func(w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("WWW-Authenticate", `Basic realm="front"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
			return true
		}}, want: map[string]doctor.Status{"access": doctor.Fail, "registry-api": doctor.Pass}},
		{name: "upstream budget spent", image: "library/budget:1", fault: func() func() {
			testenv.SeedImage(t, s.reg, "library/budget:1", 1<<10, 1)
			s.up.SetHeader("Ratelimit-Remaining", "0;w=21600")
			return func() {}
		}, want: map[string]doctor.Status{"ratelimit": doctor.Fail}},
		{name: "upstream budget low", image: "library/low:1", fault: func() func() {
			testenv.SeedImage(t, s.reg, "library/low:1", 1<<10, 1)
			s.up.SetHeader("Ratelimit-Remaining", "3;w=21600")
			return func() {}
		}, want: map[string]doctor.Status{"ratelimit": doctor.Warn}},
		// Last: after it the mirror does not ask the upstream for a
		// few seconds (upstream.FailingFor), as it remembers a host
		// that refused connections.
		{name: "upstream down, tag not cached", image: "library/fresh:1", fault: func() func() {
			testenv.SeedImage(t, s.reg, "library/fresh:1", 1<<10, 1)
			s.up.SetFault(testenv.FaultDown, "")
			return func() { s.up.SetFault(testenv.FaultNone, "") }
		}, want: map[string]doctor.Status{"upstream": doctor.Fail, "manifest-get-tag": doctor.Fail}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ran++
			if tc.fault != nil {
				defer tc.fault()()
			}
			rs, err := doctor.Run(testenv.Ctx(t), doctor.Options{Mirror: tc.front.start(t, mirror), Image: tc.image, Timeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			for check, want := range tc.want {
				r, ok := statusOf(rs, check)
				if !ok || r.Status != want {
					t.Errorf("%s: got %s (%s), want %s", check, r.Status, r.Detail, want)
				}
				if want != doctor.Pass && r.Hint == "" && r.Status == want {
					t.Errorf("%s: %s without a hint", check, want)
				}
			}
			for _, r := range rs {
				if r.Status != doctor.Pass && seen[r.Check] != doctor.Fail {
					seen[r.Check] = r.Status
				}
			}
			if t.Failed() {
				t.Logf("doctor said:\n%s", dump(rs))
			}
		})
	}
	// Every check doctor has was seen failing (remapped-length only
	// explains, so it warns), when every case ran (not under -run).
	if ran < len(cases) {
		return
	}
	good, _ := doctor.Run(testenv.Ctx(t), doctor.Options{Mirror: mirror})
	for _, r := range good {
		want := doctor.Fail
		if r.Check == "remapped-length" {
			want = doctor.Warn
		}
		if seen[r.Check] != want {
			t.Errorf("%s: never seen %s against a broken mirror (got %q)", r.Check, want, seen[r.Check])
		}
	}
}

// Under the function-URL harness, doctor reports the tag HEAD as it
// arrives, from the harness as it answers and with the length remapping
// AWS is reported to do in front of it: the expectations are read from the
// raw answers, because whether Content-Length survives is the front end's
// choice.
func TestDoctorReportsTheFunctionURLsHeadTruthfully(t *testing.T) {
	s := newStack(t)
	testenv.SeedImage(t, s.reg, doctor.DefaultImage, 32<<10, 2)
	h := s.startBootstrap(t)
	t.Run("harness", func(t *testing.T) { checkHeadTruthfully(t, h.URL()) })
	t.Run("remapped in front", func(t *testing.T) { checkHeadTruthfully(t, remapsLength.start(t, h.URL())) })
}

func checkHeadTruthfully(t *testing.T, mirror string) {
	rs, err := doctor.Run(testenv.Ctx(t), doctor.Options{Mirror: mirror})
	if err != nil {
		t.Fatal(err)
	}
	raw := func(method string) http.Header {
		req, _ := http.NewRequest(method, mirror+"/v2/library/alpine/manifests/latest", nil)
		req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Header
	}
	head, get := raw(http.MethodHead), raw(http.MethodGet)
	has := func(h http.Header, k string) bool { return h.Get(k) != "" }
	hasDigest, hasLength := has(head, "Docker-Content-Digest"), has(head, "Content-Length")
	remapped := has(head, "X-Amzn-Remapped-Content-Length") || has(get, "X-Amzn-Remapped-Content-Length")
	t.Logf("function URL HEAD: digest %v, Content-Length %v; remapped %v", hasDigest, hasLength, remapped)

	want := map[string]doctor.Status{
		"registry-api": doctor.Pass, "access": doctor.Pass, "manifest-get-tag": doctor.Pass,
		"manifest-get-digest": doctor.Pass, "blob": doctor.Pass, "head-containerd": doctor.Pass,
		"remapped-length": map[bool]doctor.Status{true: doctor.Warn, false: doctor.Pass}[remapped],
		"head-ggcr":       map[bool]doctor.Status{true: doctor.Pass, false: doctor.Fail}[hasDigest && hasLength],
	}
	if !hasDigest {
		// The mirror leaves the digest out on purpose (NoContentLength):
		// crane falls back to GET, only remote.Head alone fails.
		want["head-ggcr"] = doctor.Warn
	}
	// dockerd: a HEAD with the digest is final; without it, dockerd GETs,
	// and a GET with the digest needs a length (clients.go has the source).
	dockerdOK := hasLength
	if !hasDigest {
		dockerdOK = !has(get, "Docker-Content-Digest") || has(get, "Content-Length")
	}
	want["head-dockerd"] = map[bool]doctor.Status{true: doctor.Pass, false: doctor.Fail}[dockerdOK]
	for check, w := range want {
		if r, _ := statusOf(rs, check); r.Status != w {
			t.Errorf("%s: got %s (%s), want %s", check, r.Status, r.Detail, w)
		}
	}
	if r, _ := statusOf(rs, "head-dockerd"); hasDigest && !hasLength && !strings.Contains(r.Detail, "Content-Length") {
		t.Errorf("head-dockerd does not name the missing header: %s", r.Detail)
	}
	// The real go-containerregistry client agrees with doctor's verdict.
	_, err = remote.Head(testenv.Ref(t, mirror, "library/alpine:latest"), remote.WithTransport(http.DefaultTransport))
	if r, _ := statusOf(rs, "head-ggcr"); (err == nil) != (r.Status == doctor.Pass) || (r.Status == doctor.Warn) != (err != nil && !hasDigest) {
		t.Errorf("remote.Head says %v, doctor says %s (%s)", err, r.Status, r.Detail)
	}
	if t.Failed() {
		t.Logf("doctor said:\n%s", dump(rs))
	}
}

// doctor's head-dockerd and head-containerd verdicts are what dockerd
// 20.10 and containerd do with the same answers: where doctor passes, the
// pull goes through the mirror; where head-dockerd fails (the
// Content-Length a RESPONSE_STREAM function URL is reported to drop),
// dockerd logs "Attempting next endpoint" and goes for the real registry
// (here: into the trap, so the pull fails), while containerd falls back to
// a GET of the tag, as doctor says.
func TestDoctorsVerdictsAreTheClients(t *testing.T) {
	c := newClientStack(t)
	testenv.SeedImage(t, c.reg, doctor.DefaultImage, 16<<10, 1)
	ctd := testenv.StartContainerd(t)
	docker, ctr := testenv.Tool(t, "docker"), testenv.Tool(t, "ctr")
	for _, tc := range []struct {
		name, mirror string
		want         doctor.Status // doctor's dockerd verdict: checked, so that both branches are seen
	}{
		{"as the mirror answers", c.tap.URL, doctor.Pass},
		{"with the length remapped", remapsLength.start(t, c.tap.URL), doctor.Fail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := doctor.Run(testenv.Ctx(t), doctor.Options{Mirror: tc.mirror})
			if err != nil {
				t.Fatal(err)
			}
			verdict, _ := statusOf(rs, "head-dockerd")
			if verdict.Status != tc.want {
				t.Fatalf("doctor: got %s (%s), want %s", verdict.Status, verdict.Detail, tc.want)
			}
			trapped := c.trap.Count()
			d := testenv.StartDockerd(t, ctd, map[string]any{"registry-mirrors": []string{tc.mirror}}, c.clientEnv()...)
			env := append(c.clientEnv(), "DOCKER_CONFIG="+t.TempDir(), "DOCKER_HOST="+d.Host)
			out, err := testenv.Run(t, clientTimeout, env, docker, "pull", doctor.DefaultImage)
			log := grepLines(d.Proc.Output(), "Attempting next endpoint")
			fellBack := c.trap.Count() > trapped || log != ""
			if viaMirror := err == nil && !fellBack; viaMirror != (verdict.Status == doctor.Pass) {
				t.Errorf("doctor says %s (%s) but docker pull through the mirror: %v, fell back: %v\n%s\n%s", verdict.Status, verdict.Detail, err, fellBack, out, log)
			}
			// Where both fail, they name the same header.
			if verdict.Status == doctor.Fail && !(strings.Contains(log, "Content-Length") && strings.Contains(verdict.Detail, "Content-Length")) {
				t.Errorf("dockerd says %q, doctor %q: want both to name Content-Length", log, verdict.Detail)
			}

			verdict, _ = statusOf(rs, "head-containerd")
			hosts := t.TempDir()
			toml := fmt.Sprintf("server = \"https://registry-1.docker.io\"\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", tc.mirror)
			if err := os.MkdirAll(filepath.Join(hosts, "docker.io"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(hosts, "docker.io", "hosts.toml"), []byte(toml), 0o644); err != nil {
				t.Fatal(err)
			}
			trapped = c.trap.Count()
			c.tap.Reset()
			out, err = testenv.Run(t, clientTimeout, c.clientEnv(), ctr, "--address", ctd.Address, "images", "pull", "--hosts-dir", hosts, "--snapshotter", "native", "docker.io/"+doctor.DefaultImage)
			if viaMirror := err == nil && c.trap.Count() == trapped; viaMirror != (verdict.Status == doctor.Pass) {
				t.Errorf("doctor says %s (%s) but ctr pull through the mirror: %v, trapped %v\n%s", verdict.Status, verdict.Detail, err, c.trap.Hosts(), out)
			}
			tagGET := false
			for _, r := range c.tap.requests() {
				tagGET = tagGET || (r.method == http.MethodGet && strings.HasPrefix(r.uri, "/v2/library/alpine/manifests/latest"))
			}
			if says := strings.Contains(verdict.Detail, "falls back to GET"); says != tagGET {
				t.Errorf("doctor says %q; containerd sent a GET of the tag: %v\n%s", verdict.Detail, tagGET, c.tap)
			}
		})
	}
}

func grepLines(s string, words ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// A mirror whose upstream lacks doctor's image is not called a broken
// mirror: the upstream check says the image is missing and to pass
// --image, instead of "not a pullthrough mirror" (a mirror's 404 carries no
// cache header).
func TestDoctorOnAnImageTheUpstreamLacks(t *testing.T) {
	s := newStack(t)
	mirror, _ := testenv.StartMirror(t, testenv.BuildMirror(t, false), s.env("PULLTHROUGH_UPSTREAMS=docker.io="+s.up.URL.String())...)
	rs, _ := runDoctor(t, nil, mirror)
	r, ok := statusOf(rs, "upstream")
	if !ok || strings.Contains(r.Hint, "not a pullthrough mirror") || !strings.Contains(r.Detail, "--image") {
		t.Errorf("upstream: got %s %q (hint %q), want the missing image named and --image suggested", r.Status, r.Detail, r.Hint)
	}
}
