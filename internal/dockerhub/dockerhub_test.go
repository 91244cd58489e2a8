package dockerhub

import (
	"os"
	"strings"
	"testing"
)

func TestCanonical(t *testing.T) {
	for in, want := range map[string]string{
		"docker.io": Host, "Registry-1.Docker.IO": Host, "index.docker.io": Host, "registry.hub.docker.com": Host,
		"ghcr.io": "ghcr.io", "Quay.IO": "quay.io", "docker.io.example": "docker.io.example",
	} {
		if got := Canonical(in); got != want {
			t.Errorf("Canonical(%q): got %q, want %q", in, got, want)
		}
	}
}

// The Terraform module maps docker.io to its API endpoint itself (HCL
// cannot import Go); keep the two equal.
func TestTerraformAgrees(t *testing.T) {
	endpoint := `"/^` + strings.ReplaceAll(strings.TrimPrefix(URL, "https://"), ".", `\\.`) + `$/", "` + Host + `"`
	for file, wants := range map[string][]string{
		"main.tf":      {`e[0] == "` + Host + `" ? "` + URL + `"`, endpoint},
		"variables.tf": {endpoint, `default     = "` + URL + `"`},
	} {
		tf, err := os.ReadFile("../../infra/terraform/" + file)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range wants {
			if !strings.Contains(string(tf), want) {
				t.Errorf("infra/terraform/%s does not contain %s: keep it equal to package dockerhub", file, want)
			}
		}
	}
}
