package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// buildBase builds the local-server binary from the git commit ref (the
// BENCH_BASE variable), so that one run compares a change with what it
// changes on the same machine under the same load. The tree is exported
// with git archive: no worktree or branch is touched.
func buildBase(t *testing.T, ref string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	src := t.TempDir()
	archive := exec.CommandContext(ctx, "sh", "-c", `git archive "$1" | tar -x -C "$2"`, "sh", ref, src)
	archive.Dir = ".." // the module root: git archive exports the directory it runs in
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("BENCH_BASE=%s: git archive: %v\n%s", ref, err, out)
	}
	bin := filepath.Join(t.TempDir(), "pullthrough")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./functions/registry")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("BENCH_BASE=%s: go build: %v\n%s", ref, err, out)
	}
	return bin
}

// startBase is startLocal with the BENCH_BASE binary.
func (e *benchEnv) startBase(t *testing.T, run int) *instance {
	return e.startServer(t, e.base, fmt.Sprintf("bench/base-%d", run), true)
}

func baseRef() string { return os.Getenv("BENCH_BASE") }
