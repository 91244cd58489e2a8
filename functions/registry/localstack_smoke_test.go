package main

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/testenv"
)

// TestLocalStackSmokeScript runs localstack/smoke.sh, which cannot run here
// against LocalStack (no Docker), against the mirror binary over S3 with a
// Docker Hub-like upstream on loopback: the script's two pulls with ?ns=, as
// containerd sends them, must pass, the second one all cache hits.
func TestLocalStackSmokeScript(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the smoke script against a mirror over S3")
	}
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	testenv.Tool(t, "crane") // smoke.sh finds it in the tool cache
	s := newStack(t)
	testenv.SeedImage(t, s.reg, "library/ptsmoke:1", 64<<10, 2)
	mirror, _ := testenv.StartMirror(t, testenv.BuildMirror(t, false), s.env("PULLTHROUGH_UPSTREAMS=docker.io="+s.up.URL.String())...)
	script, err := filepath.Abs(filepath.Join("..", "..", "localstack", "smoke.sh"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := testenv.Run(t, 3*time.Minute, []string{
		"PULLTHROUGH_SMOKE_MIRROR=" + mirror,
		"PULLTHROUGH_SMOKE_IMAGE=library/ptsmoke:1",
	}, "bash", script)
	if err != nil {
		t.Fatalf("smoke.sh: %v\n%s", err, out)
	}
	t.Logf("smoke.sh:\n%s", out)
}
