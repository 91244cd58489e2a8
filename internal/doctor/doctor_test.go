package doctor

import (
	"os/exec"
	"strings"
	"testing"
)

// A name without a registry goes to the default upstream as dockerd asks;
// one with a registry host is asked with ?ns= as containerd does.
func TestImageNames(t *testing.T) {
	for _, tc := range []struct {
		image, name, tag, ns string
		bad                  bool
	}{
		{image: "library/alpine:latest", name: "library/alpine", tag: "latest"},
		{image: "alpine", name: "library/alpine", tag: "latest"},
		{image: "docker.io/library/alpine:3.20", name: "library/alpine", tag: "3.20", ns: "docker.io"},
		{image: "ghcr.io/org/app:1", name: "org/app", tag: "1", ns: "ghcr.io"},
		{image: "localhost:5000/team/app:v2", name: "team/app", tag: "v2", ns: "localhost:5000"},
		{image: "alpine@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", bad: true},
		{image: "Not An Image", bad: true},
	} {
		t.Run(tc.image, func(t *testing.T) {
			d, err := newDoctor(Options{Mirror: "https://m.example/", Image: tc.image})
			if tc.bad {
				if err == nil {
					t.Fatalf("got no error, want one")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.name != tc.name || d.tag != tc.tag || d.ns != tc.ns || d.base != "https://m.example" {
				t.Errorf("got %s:%s ns %q base %s, want %s:%s ns %q", d.name, d.tag, d.ns, d.base, tc.name, tc.tag, tc.ns)
			}
		})
	}
}

// doctor is a client of a mirror: it sees the mirror only through HTTP,
// as users' clients do, and shares no code with it or with AWS (package
// dockerhub holds Docker Hub's names, facts both sides must agree on).
func TestDoctorIsOnlyAClient(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if own := strings.HasPrefix(dep, "github.com/pullthrough/pullthrough/"); strings.Contains(dep, "aws") || (own && dep != "github.com/pullthrough/pullthrough/internal/doctor" && dep != "github.com/pullthrough/pullthrough/internal/dockerhub") {
			t.Errorf("internal/doctor depends on %s", dep)
		}
	}
}
