// Package kubernetes holds the manifests that put pullthrough's client
// configuration on a cluster's nodes, and their tests.
package kubernetes

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// The manifest users apply, and the shape of the Secret they make.
var manifests = []string{"hosts-daemonset.yaml", "hosts-secret.example.yaml"}

type objects struct {
	namespace *corev1.Namespace
	secret    *corev1.Secret
	daemonSet *appsv1.DaemonSet
}

// load parses every document of the manifests into the Kubernetes API type its
// kind names, strictly: an unknown field, one whose case differs
// (readOnlyRootFileSystem), a duplicate key or a value of the wrong type
// fails, as the API server's strict field validation (kubectl apply
// --validate=strict) refuses it. The layers are the ones apimachinery's
// serializer uses: sigs.k8s.io/yaml to turn YAML into JSON, then
// sigs.k8s.io/json's case-sensitive UnmarshalStrict (plain encoding/json,
// and so yaml.UnmarshalStrict, would match field names in any case).
func load(t *testing.T) objects {
	t.Helper()
	var docs [][]byte
	for _, m := range manifests {
		raw, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, bytes.Split(raw, []byte("\n---\n"))...)
	}
	var o objects
	for i, doc := range docs {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		var dst any
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 Namespace":
			o.namespace = &corev1.Namespace{}
			dst = o.namespace
		case "v1 Secret":
			o.secret = &corev1.Secret{}
			dst = o.secret
		case "apps/v1 DaemonSet":
			o.daemonSet = &appsv1.DaemonSet{}
			dst = o.daemonSet
		default:
			t.Fatalf("document %d: unexpected %s %s", i, tm.APIVersion, tm.Kind)
		}
		j, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			t.Fatalf("document %d (%s): %v", i, tm.Kind, err)
		}
		strict, err := kjson.UnmarshalStrict(j, dst)
		if err != nil {
			t.Fatalf("document %d (%s): %v", i, tm.Kind, err)
		}
		for _, e := range strict {
			t.Errorf("document %d (%s): %v", i, tm.Kind, e)
		}
	}
	if o.namespace == nil || o.secret == nil || o.daemonSet == nil {
		t.Fatalf("want a Namespace, a Secret and a DaemonSet in %v", manifests)
	}
	return o
}

// TestManifestStrict checks that the objects fit together the way the
// kubelet needs: names, namespace, selector, the Secret behind the source
// volume, the host directory, and the paths the script is given.
func TestManifestStrict(t *testing.T) {
	o := load(t)
	ds := o.daemonSet
	for _, ns := range []string{o.secret.Namespace, ds.Namespace} {
		if ns != o.namespace.Name {
			t.Errorf("namespace %q, want %q (the manifest's Namespace)", ns, o.namespace.Name)
		}
	}
	for k, v := range ds.Spec.Selector.MatchLabels {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod template's labels %v", k, v, ds.Spec.Template.Labels)
		}
	}
	pod := ds.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	for _, v := range pod.Volumes {
		m, ok := mounts[v.Name]
		if !ok {
			t.Errorf("volume %s is not mounted", v.Name)
			continue
		}
		switch {
		case v.Secret != nil:
			if v.Secret.SecretName != o.secret.Name {
				t.Errorf("secret volume %s names %q, want %q", v.Name, v.Secret.SecretName, o.secret.Name)
			}
			if env["SOURCE_DIR"] != m.MountPath {
				t.Errorf("SOURCE_DIR = %q, want the Secret's mount path %q", env["SOURCE_DIR"], m.MountPath)
			}
		case v.HostPath != nil:
			if v.HostPath.Path != "/etc/containerd/certs.d" {
				t.Errorf("hostPath %q, want containerd's config_path /etc/containerd/certs.d", v.HostPath.Path)
			}
			if env["HOSTS_DIR"] != m.MountPath || m.ReadOnly {
				t.Errorf("HOSTS_DIR = %q (mount %q, read-only %v), want the writable host mount", env["HOSTS_DIR"], m.MountPath, m.ReadOnly)
			}
		default:
			t.Errorf("volume %s: unexpected source", v.Name)
		}
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("securityContext %+v: want a read-only root, no privilege escalation, all capabilities dropped", sc)
	}
	if len(c.Command) != 2 || c.Command[0] != "/bin/sh" || c.Command[1] != "-c" || len(c.Args) != 1 {
		t.Fatalf("command %q args %d: want /bin/sh -c SCRIPT", c.Command, len(c.Args))
	}
	for reg, content := range o.secret.StringData {
		cfg := parseHosts(t, reg, content)
		checkHeader(t, reg, cfg)
	}
}

// hostsFile is the part of containerd's hosts.toml schema these files use
// (hostFileConfig in core/remotes/docker/config/hosts.go).
type hostsFile struct {
	Server string `toml:"server"`
	Host   map[string]struct {
		Capabilities []string          `toml:"capabilities"`
		Header       map[string]string `toml:"header"`
	} `toml:"host"`
}

func parseHosts(t *testing.T, name, content string) hostsFile {
	t.Helper()
	var f hostsFile
	md, err := toml.Decode(content, &f)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		t.Errorf("%s: keys containerd would not read here: %v", name, u)
	}
	return f
}

// checkHeader: every mirror table carries an Authorization header, so that a
// token-protected mirror does not answer every node 401 (and the node pull
// past it).
func checkHeader(t *testing.T, name string, f hostsFile) {
	t.Helper()
	if len(f.Host) == 0 {
		t.Errorf("%s: no [host.\"<mirror>\"] table", name)
	}
	for url, h := range f.Host {
		if !strings.HasPrefix(h.Header["Authorization"], "Bearer ") {
			t.Errorf("%s: [host.%q.header] Authorization = %q, want a Bearer token", name, url, h.Header["Authorization"])
		}
		if len(h.Capabilities) != 2 || h.Capabilities[0] != "pull" || h.Capabilities[1] != "resolve" {
			t.Errorf("%s: capabilities %q, want pull and resolve only", name, h.Capabilities)
		}
	}
}

// TestSyncScript runs the DaemonSet's script with /bin/sh over a copy of the
// Secret laid out as the kubelet lays out a secret volume (each key a symlink
// into ..data) and a stand-in for the node's /etc/containerd/certs.d.
func TestSyncScript(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	o := load(t)
	script := o.daemonSet.Spec.Template.Spec.Containers[0].Args[0]
	root := t.TempDir()
	src, hosts := filepath.Join(root, "config"), filepath.Join(root, "certs.d")
	data := filepath.Join(src, "..2026_12_08_00_00_00.000000001")
	mkdir(t, data)
	for k, v := range o.secret.StringData {
		write(t, filepath.Join(data, k), v, 0o400)
	}
	must(t, os.Symlink(filepath.Base(data), filepath.Join(src, "..data")))
	for k := range o.secret.StringData {
		must(t, os.Symlink(filepath.Join("..data", k), filepath.Join(src, k)))
	}
	// A directory this DaemonSet wrote for a registry since dropped, and one
	// written by someone else (the node image), which must be left alone.
	write(t, filepath.Join(hosts, "old.example", "hosts.toml"), "server = \"https://old.example\"\n", 0o600)
	write(t, filepath.Join(hosts, "old.example", ".pullthrough"), "", 0o600)
	const foreign = "server = \"https://quay.io\"\n"
	write(t, filepath.Join(hosts, "quay.io", "hosts.toml"), foreign, 0o644)

	run := func() string {
		cmd := exec.Command(sh, "-c", script)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "SOURCE_DIR=" + src, "HOSTS_DIR=" + hosts, "INTERVAL=0"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("script: %v\n%s", err, out)
		}
		return string(out)
	}
	out := run()
	for k, want := range o.secret.StringData {
		p := filepath.Join(hosts, k, "hosts.toml")
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%s: %v\n%s", p, err, out)
		}
		if string(got) != want {
			t.Errorf("%s = %q, want the Secret's %q", p, got, want)
		}
		if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %o, want 0600 (it holds the client token)", p, st.Mode().Perm())
		}
		checkHeader(t, p, parseHosts(t, p, string(got)))
	}
	if _, err := os.Stat(filepath.Join(hosts, "old.example")); !os.IsNotExist(err) {
		t.Errorf("old.example: %v, want the dropped registry's directory removed\n%s", err, out)
	}
	if got, _ := os.ReadFile(filepath.Join(hosts, "quay.io", "hosts.toml")); string(got) != foreign {
		t.Errorf("quay.io/hosts.toml = %q, want the node's own file untouched", got)
	}
	if again := run(); strings.Contains(again, "wrote") || strings.Contains(again, "removed") {
		t.Errorf("second run changed files that were already right:\n%s", again)
	}
}

func mkdir(t *testing.T, dir string) { t.Helper(); must(t, os.MkdirAll(dir, 0o755)) }

func write(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	mkdir(t, filepath.Dir(p))
	must(t, os.WriteFile(p, []byte(content), mode))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(fmt.Errorf("setup: %w", err))
	}
}
