package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/testenv"
)

// runMirror runs the local-server binary with args and env (on top of
// PATH and HOME) until it exits, for at most 10 s: a process still running
// then (a server started by mistake) is killed and reported as exit -1.
func runMirror(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runMirrorAs(t, nil, env, args...)
}

// runMirrorAs is runMirror with the process's credentials (nil: ours).
func runMirrorAs(t *testing.T, cred *syscall.Credential, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	bin := testenv.BuildMirror(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		code = -1
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// help, -h and --help print the subcommands and where the variables are
// documented; an unknown word is an error, never a server on :5000.
func TestCommandLine(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the mirror binary")
	}
	addr := testenv.FreeAddr(t)
	env := []string{"PULLTHROUGH_ADDR=" + addr, "PULLTHROUGH_STORE=file://" + t.TempDir()}
	for _, tc := range []struct {
		args     []string
		wantCode int
		stdout   []string
		stderr   []string
	}{
		{[]string{"help"}, 0, []string{"pullthrough warm", "pullthrough sweep", "pullthrough doctor", "README.md", "Configuration"}, nil},
		{[]string{"-h"}, 0, []string{"pullthrough warm", "README.md"}, nil},
		{[]string{"--help"}, 0, []string{"pullthrough warm", "README.md"}, nil},
		{[]string{"version"}, 0, []string{"pullthrough dev"}, nil},
		{[]string{"serve"}, 2, nil, []string{`unknown command "serve"`, "pullthrough help"}},
		{[]string{"--port", "8080"}, 2, nil, []string{`unknown flag "--port"`}},
		{[]string{"help", "warm"}, 2, nil, []string{"help takes no arguments"}},
		{[]string{"sweep", "--force"}, 2, nil, []string{"flag provided but not defined: -force"}},
		{[]string{"warm"}, 2, nil, []string{"usage: pullthrough warm"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			stdout, stderr, code := runMirror(t, env, tc.args...)
			if code != tc.wantCode {
				t.Fatalf("got exit status %d, want %d (-1: still running after 10s)\nstdout: %s\nstderr: %s", code, tc.wantCode, stdout, stderr)
			}
			for _, w := range tc.stdout {
				if !strings.Contains(stdout, w) {
					t.Errorf("got stdout %q, want it to contain %q", stdout, w)
				}
			}
			for _, w := range tc.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("got stderr %q, want it to contain %q", stderr, w)
				}
			}
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				t.Errorf("something listens on PULLTHROUGH_ADDR %s after %q, want nothing", addr, tc.args)
			}
		})
	}
}
