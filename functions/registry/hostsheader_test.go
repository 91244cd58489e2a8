package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"gopkg.in/yaml.v3"

	"github.com/pullthrough/pullthrough/internal/testenv"
)

// TestHostsHeaderToken pulls with containerd 2.4 through a mirror that
// requires a client token, using the hosts.toml files the Kubernetes
// DaemonSet puts on nodes (packaging/kubernetes/hosts-secret.example.yaml,
// with the mirror's URL and the token put in): the [host."...".header]
// table is what carries the credential, and without it the mirror answers
// every request 401 and the node pulls past it.
func TestHostsHeaderToken(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a containerd daemon")
	}
	const token = "node-token-5f2c"
	s := newStack(t)
	mirror, _ := testenv.StartMirror(t, testenv.BuildMirror(t, false),
		s.env("PULLTHROUGH_UPSTREAMS=docker.io="+s.up.URL.String(), "PULLTHROUGH_CLIENT_TOKENS="+token)...)
	c := &clientStack{stack: s, tap: newTap(t, mirror), trap: newTrap(t)}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("requests the client sent to the mirror:\n%s", c.tap)
		}
	})
	raw, err := os.ReadFile(filepath.Join("..", "..", "packaging", "kubernetes", "hosts-secret.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var secret struct {
		StringData map[string]string `yaml:"stringData"`
	}
	if err := yaml.Unmarshal(raw, &secret); err != nil {
		t.Fatal(err)
	}
	example, ok := secret.StringData["docker.io"]
	if !ok || !strings.Contains(example, "[host.\"https://mirror.example.com\".header]") {
		t.Fatalf("the example Secret has no docker.io hosts.toml with a header table:\n%s", example)
	}
	withToken := strings.NewReplacer("https://mirror.example.com", c.tap.URL,
		"REPLACE-WITH-A-PULLTHROUGH_CLIENT_TOKENS-ENTRY", token).Replace(example)
	withoutHeader, _, _ := strings.Cut(withToken, "\n[host.\""+c.tap.URL+"\".header]")

	ctd := testenv.StartContainerd2(t)
	ctr := testenv.Tool(t, "containerd-v2/ctr")
	for _, tc := range []struct {
		name, hostsTOML string
		wantPull        bool
	}{
		{"with the header", withToken, true},
		{"without it", withoutHeader, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hosts := t.TempDir()
			if err := os.MkdirAll(filepath.Join(hosts, "docker.io"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(hosts, "docker.io", "hosts.toml"), []byte(tc.hostsTOML), 0o600); err != nil {
				t.Fatal(err)
			}
			repo := "library/ptheader-" + strings.ReplaceAll(tc.name, " ", "-")
			_, imgs := seedMultiArch(t, c.reg, repo+":1", types.OCIImageIndex)
			c.tap.Reset()
			out, err := testenv.Run(t, clientTimeout, c.clientEnv(), ctr, "--address", ctd.Address,
				"images", "pull", "--hosts-dir", hosts, "--snapshotter", "native", "--platform", "linux/amd64", "docker.io/"+repo+":1")
			if tc.wantPull {
				if err != nil {
					t.Fatalf("ctr images pull: %v\n%s", err, out)
				}
				fetched := map[string]bool{}
				for _, r := range c.tap.requests() {
					if r.status != http.StatusOK {
						t.Errorf("%s: got %d, want 200 for a node that sends the token", r, r.status)
					}
					if path, _, _ := strings.Cut(r.uri, "?"); r.method == http.MethodGet && strings.Contains(path, "/blobs/") {
						fetched[path[strings.LastIndex(path, "/")+1:]] = true
					}
				}
				for _, b := range blobsOf(t, imgs["amd64"]) {
					if !fetched[b] {
						t.Errorf("blob %s was not fetched through the mirror", b)
					}
				}
				return
			}
			// The fallback, registry-1.docker.io, is the trap: the pull fails.
			if err == nil {
				t.Fatalf("ctr images pull succeeded without the token:\n%s", out)
			}
			reqs := c.tap.requests()
			if len(reqs) == 0 {
				t.Fatal("containerd sent the mirror nothing")
			}
			for _, r := range reqs {
				if r.status != http.StatusUnauthorized {
					t.Errorf("%s: got %d, want 401 from a mirror that requires a token", r, r.status)
				}
			}
		})
	}
}
