package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"gopkg.in/yaml.v3"

	"github.com/pullthrough/pullthrough/internal/testenv"
)

// recipeUpstreams are the registries the rendered recipes name, with the
// registries' own URLs that nodes fall back to. The trap catches any
// attempt to reach them.
var recipeUpstreams = map[string]string{
	"docker.io": "https://registry-1.docker.io",
	"ghcr.io":   "https://ghcr.io",
}

// recipes are the outputs of infra/terraform/modules/node-recipes.
type recipes struct {
	ContainerdHostsTOML   map[string]string `json:"containerd_hosts_toml"`
	ContainerdHostsFiles  map[string]string `json:"containerd_hosts_files"`
	BottlerocketSettings  string            `json:"bottlerocket_settings_toml"`
	K3sRegistriesYAML     string            `json:"k3s_registries_yaml"`
	BuildkitdTOML         string            `json:"buildkitd_toml"`
	AL2023UserData        string            `json:"al2023_user_data"`
	KarpenterNodeClassFix string            `json:"karpenter_ec2nodeclass_patch"`
}

// renderRecipes applies the node-recipes module (it has no provider, so
// terraform needs neither init nor network) on a copy of its files and
// returns its outputs.
func renderRecipes(t *testing.T, mirrorURL string, upstreams map[string]string) recipes {
	t.Helper()
	terraform := testenv.Tool(t, "terraform")
	src := filepath.Join("..", "..", "infra", "terraform", "modules", "node-recipes")
	dir := t.TempDir()
	tfs, err := filepath.Glob(filepath.Join(src, "*.tf"))
	if err != nil || len(tfs) == 0 {
		t.Fatalf("no module files in %s: %v", src, err)
	}
	for _, f := range tfs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	vars, err := json.Marshal(map[string]any{"mirror_url": mirrorURL, "upstreams": upstreams})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "test.tfvars.json"), vars, 0o644); err != nil {
		t.Fatal(err)
	}
	rc := filepath.Join(dir, "terraformrc")
	if err := os.WriteFile(rc, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"TF_CLI_CONFIG_FILE=" + rc, "TF_DATA_DIR=" + filepath.Join(dir, ".terraform"), "TF_IN_AUTOMATION=1", "CHECKPOINT_DISABLE=1"}
	if out, err := testenv.Run(t, time.Minute, env, terraform, "-chdir="+dir, "apply", "-auto-approve", "-input=false", "-no-color", "-var-file=test.tfvars.json"); err != nil {
		t.Fatalf("terraform apply: %v\n%s", err, out)
	}
	out, err := testenv.Run(t, time.Minute, env, terraform, "-chdir="+dir, "output", "-json")
	if err != nil {
		t.Fatalf("terraform output: %v\n%s", err, out)
	}
	var raw map[string]struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("terraform output -json: %v\n%s", err, out)
	}
	flat := map[string]json.RawMessage{}
	for k, v := range raw {
		flat[k] = v.Value
	}
	b, _ := json.Marshal(flat)
	var r recipes
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestNodeRecipes renders the module's node recipes for a mirror on
// loopback, installs the AL2023 user data's files the way cloud-init would
// and pulls through them with real containerd (one registry by its own
// hosts.toml, another by _default, both routed with ?ns=), and reads every
// other recipe with its format's parser.
func TestNodeRecipes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs terraform and a containerd daemon")
	}
	s := newStack(t)
	up := s.up.URL.String()
	mirror, _ := testenv.StartMirror(t, testenv.BuildMirror(t, false), s.env("PULLTHROUGH_UPSTREAMS=docker.io="+up+",quay.io="+up)...)
	c := &clientStack{stack: s, tap: newTap(t, mirror), trap: newTrap(t)}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("requests the client sent to the mirror:\n%s", c.tap)
		}
	})
	r := renderRecipes(t, c.tap.URL, recipeUpstreams)
	mirrorHost := strings.TrimPrefix(c.tap.URL, "http://")

	if got, want := slices.Sorted(maps.Keys(r.ContainerdHostsTOML)), []string{"_default", "docker.io", "ghcr.io"}; !slices.Equal(got, want) {
		t.Errorf("containerd_hosts_toml directories: got %v, want %v", got, want)
	}
	for dir, content := range r.ContainerdHostsTOML {
		if got := r.ContainerdHostsFiles["/etc/containerd/certs.d/"+dir+"/hosts.toml"]; got != content {
			t.Errorf("containerd_hosts_files lacks %s's hosts.toml: got %q, want %q", dir, got, content)
		}
	}

	hosts := installUserData(t, r)

	t.Run("containerd", func(t *testing.T) {
		ctd := testenv.StartContainerd(t)
		ctr := testenv.Tool(t, "ctr")
		for _, tc := range []struct {
			name, ref, ns string
		}{
			// docker.io/hosts.toml: its own directory.
			{"own hosts.toml", "docker.io/library/ptrecipe:1", "ns=docker.io"},
			// No quay.io directory: _default/hosts.toml sends it to the
			// mirror, which serves quay.io.
			{"_default", "quay.io/library/ptrecipe:2", "ns=quay.io"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				repoTag := strings.SplitN(tc.ref, "/", 2)[1]
				_, imgs := seedMultiArch(t, c.reg, repoTag, types.OCIImageIndex)
				c.up.Reset()
				c.tap.Reset()
				out, err := testenv.Run(t, clientTimeout, c.clientEnv(), ctr, "--address", ctd.Address,
					"images", "pull", "--hosts-dir", hosts, "--snapshotter", "native", "--platform", "linux/amd64", tc.ref)
				if err != nil {
					t.Fatalf("ctr images pull %s: %v\n%s", tc.ref, err, out)
				}
				c.tap.requireOnly(t, tc.name, "/v2/library/ptrecipe/", tc.ns)
				c.tap.requireBlobs(t, tc.name, blobsOf(t, imgs["amd64"]), "miss")
				c.checkCounts(t, tc.name, blobsOf(t, imgs["amd64"]), true)
			})
		}
	})

	t.Run("bottlerocket", func(t *testing.T) {
		var cfg struct {
			Settings struct {
				ContainerRegistry struct {
					Mirrors []struct {
						Registry string   `toml:"registry"`
						Endpoint []string `toml:"endpoint"`
					} `toml:"mirrors"`
				} `toml:"container-registry"`
			} `toml:"settings"`
		}
		strictTOML(t, r.BottlerocketSettings, &cfg)
		var got []string
		for _, m := range cfg.Settings.ContainerRegistry.Mirrors {
			got = append(got, m.Registry)
			if !slices.Equal(m.Endpoint, []string{c.tap.URL}) {
				t.Errorf("%s endpoint: got %v, want [%s]", m.Registry, m.Endpoint, c.tap.URL)
			}
		}
		if want := slices.Sorted(maps.Keys(recipeUpstreams)); !slices.Equal(got, want) {
			t.Errorf("mirrored registries: got %v, want %v", got, want)
		}
	})

	t.Run("k3s", func(t *testing.T) {
		var cfg struct {
			Mirrors map[string]struct {
				Endpoint []string `yaml:"endpoint"`
			} `yaml:"mirrors"`
		}
		strictYAML(t, r.K3sRegistriesYAML, &cfg)
		if got, want := slices.Sorted(maps.Keys(cfg.Mirrors)), slices.Sorted(maps.Keys(recipeUpstreams)); !slices.Equal(got, want) {
			t.Errorf("mirrored registries: got %v, want %v", got, want)
		}
		for host, m := range cfg.Mirrors {
			if !slices.Equal(m.Endpoint, []string{c.tap.URL}) {
				t.Errorf("%s endpoint: got %v, want [%s]", host, m.Endpoint, c.tap.URL)
			}
		}
	})

	t.Run("buildkitd", func(t *testing.T) {
		var cfg struct {
			Registry map[string]struct {
				Mirrors []string `toml:"mirrors"`
				HTTP    bool     `toml:"http"`
			} `toml:"registry"`
		}
		strictTOML(t, r.BuildkitdTOML, &cfg)
		for host := range recipeUpstreams {
			if got := cfg.Registry[host].Mirrors; !slices.Equal(got, []string{mirrorHost}) {
				t.Errorf("%s mirrors: got %v, want [%s] (a host, no scheme)", host, got, mirrorHost)
			}
		}
		if !cfg.Registry[mirrorHost].HTTP {
			t.Errorf("the plain-HTTP mirror %s lacks http = true:\n%s", mirrorHost, r.BuildkitdTOML)
		}
	})

	t.Run("karpenter", func(t *testing.T) {
		var patch struct {
			Spec struct {
				UserData string `yaml:"userData"`
			} `yaml:"spec"`
		}
		strictYAML(t, r.KarpenterNodeClassFix, &patch)
		if patch.Spec.UserData != r.AL2023UserData {
			t.Errorf("spec.userData: got %q, want the AL2023 user data %q", patch.Spec.UserData, r.AL2023UserData)
		}
	})
}

// installUserData writes the files of the AL2023 user data under a
// temporary root, as cloud-init writes them on a node, checks they are the
// module's, and returns the node's config_path (<root>/etc/containerd/certs.d).
func installUserData(t *testing.T, r recipes) string {
	t.Helper()
	root := t.TempDir()
	for path, content := range cloudConfigFiles(t, r.AL2023UserData) {
		if r.ContainerdHostsFiles[path] != content {
			t.Errorf("user data writes %s with %q, want the module's %q", path, content, r.ContainerdHostsFiles[path])
		}
		p := filepath.Join(root, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(root, "etc", "containerd", "certs.d")
}

// strictTOML decodes doc into v, refusing keys v does not name.
func strictTOML(t *testing.T, doc string, v any) {
	t.Helper()
	md, err := toml.Decode(doc, v)
	if err != nil {
		t.Fatalf("not TOML: %v\n%s", err, doc)
	}
	if u := md.Undecoded(); len(u) > 0 {
		t.Errorf("unknown keys %v in\n%s", u, doc)
	}
}

// strictYAML decodes doc into v, refusing keys v does not name.
func strictYAML(t *testing.T, doc string, v any) {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("not the expected YAML: %v\n%s", err, doc)
	}
}

// cloudConfigFiles reads a MIME multi-part user data document the way
// cloud-init does and returns the write_files of its one cloud-config part,
// path to content.
func cloudConfigFiles(t *testing.T, userData string) map[string]string {
	t.Helper()
	tp := textproto.NewReader(bufio.NewReader(strings.NewReader(userData)))
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		t.Fatalf("user data headers: %v\n%s", err, userData)
	}
	if v := h.Get("MIME-Version"); v != "1.0" {
		t.Errorf("MIME-Version: got %q, want 1.0", v)
	}
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		t.Fatalf("Content-Type %q: got %s %v (%v), want multipart/mixed with a boundary", h.Get("Content-Type"), mt, params, err)
	}
	mr := multipart.NewReader(tp.R, params["boundary"])
	files := map[string]string{}
	parts := 0
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("part %d: %v", parts, err)
		}
		parts++
		body, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		if ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); ct != "text/cloud-config" {
			t.Fatalf("part %d: Content-Type %q, want text/cloud-config", parts, p.Header.Get("Content-Type"))
		}
		if !bytes.HasPrefix(body, []byte("#cloud-config\n")) {
			t.Fatalf("part %d does not start with #cloud-config:\n%s", parts, body)
		}
		var cc struct {
			WriteFiles []struct {
				Path        string `yaml:"path"`
				Owner       string `yaml:"owner"`
				Permissions string `yaml:"permissions"`
				Content     string `yaml:"content"`
			} `yaml:"write_files"`
		}
		strictYAML(t, string(body), &cc)
		for _, f := range cc.WriteFiles {
			if f.Owner != "root:root" || f.Permissions != "0644" {
				t.Errorf("%s: owner %q permissions %q, want root:root 0644", f.Path, f.Owner, f.Permissions)
			}
			if !strings.HasPrefix(f.Path, "/etc/containerd/certs.d/") || !strings.HasSuffix(f.Path, "/hosts.toml") || strings.Contains(f.Path, "..") {
				t.Errorf("writes %s, want /etc/containerd/certs.d/<host>/hosts.toml", f.Path)
			}
			files[f.Path] = f.Content
		}
	}
	if parts != 1 || len(files) == 0 {
		t.Fatalf("got %d parts writing %d files, want one cloud-config part writing the hosts.toml files", parts, len(files))
	}
	return files
}
