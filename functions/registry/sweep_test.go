package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pullthrough/pullthrough/internal/lambdaharness"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

func TestParseRetention(t *testing.T) {
	for _, tc := range []struct {
		env     string
		want    time.Duration
		wantErr bool
	}{
		{"", 0, false},
		{"30d", 30 * 24 * time.Hour, false},
		{"720h", 720 * time.Hour, false},
		{"2d", 48 * time.Hour, false},
		{"1d", 0, true}, // shorter than a use record's granularity allows
		{"thirty", 0, true},
		{"-3d", 0, true},
	} {
		c, err := parseConfig(map[string]string{"PULLTHROUGH_RETENTION": tc.env})
		if (err != nil) != tc.wantErr || (!tc.wantErr && c.Retention != tc.want) {
			t.Errorf("PULLTHROUGH_RETENTION=%q: got %s, %v; want %s, error %v", tc.env, c.Retention, err, tc.want, tc.wantErr)
		}
	}
}

// `pullthrough sweep` and the function's sweep event delete what nothing
// used within the retention uses (here an orphan blob whose file is aged
// 40 days in versitygw's posix backend), and keep an image just warmed.
func TestSweepCommandAndLambdaEvent(t *testing.T) {
	s := newStack(t)
	img := testenv.SeedImage(t, s.reg, "library/alpine:3.20", 32<<10, 2)
	bin := testenv.BuildMirror(t, false)
	run := func(env []string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	env := s.env("PULLTHROUGH_UPSTREAMS=docker.io=" + s.up.URL.String())
	if out, err := run(env, "warm", "library/alpine:3.20"); err != nil {
		t.Fatalf("warm: %v\n%s", err, out)
	}
	orphan := "blobs/sha256/" + strings.Repeat("ab", 32)
	_, err := s.s3.Client().PutObject(context.Background(), &s3.PutObjectInput{Bucket: &s.s3.Bucket, Key: aws.String(orphan), Body: bytes.NewReader(make([]byte, 1000))})
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-40 * 24 * time.Hour)
	if err := os.Chtimes(filepath.Join(s.s3.Dir, s.s3.Bucket, filepath.FromSlash(orphan)), old, old); err != nil {
		t.Fatal(err)
	}
	has := func(key string) bool {
		for _, k := range s.s3.Keys(t) {
			if k == key {
				return true
			}
		}
		return false
	}

	if out, err := run(env, "sweep"); err == nil || !strings.Contains(out, "PULLTHROUGH_RETENTION") {
		t.Errorf("sweep without a retention: got %v\n%s\nwant an error naming PULLTHROUGH_RETENTION", err, out)
	}
	env = append(env, "PULLTHROUGH_RETENTION=30d")
	out, err := run(env, "sweep", "--dry-run")
	if err != nil {
		t.Fatalf("sweep --dry-run: %v\n%s", err, out)
	}
	if !strings.Contains(out, "would delete "+orphan+" (1000 bytes)") || !strings.Contains(out, "would delete 1 objects, 1000 bytes freed") {
		t.Errorf("dry run output:\n%s\nwant the orphan and 1000 bytes", out)
	}
	if !has(orphan) {
		t.Fatal("the dry run deleted the orphan")
	}

	h, err := lambdaharness.New(lambdaharness.Options{FunctionName: "pullthrough"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	testenv.Start(t, append(env, "AWS_LAMBDA_RUNTIME_API="+h.RuntimeAPI(), "AWS_LAMBDA_FUNCTION_NAME=pullthrough", "PULLTHROUGH_ALLOW_OPEN=true"), testenv.BuildMirror(t, true))
	// What an EventBridge schedule sends (infra/terraform/sweep.tf).
	resp, err := http.Post(h.InvokeEndpoint()+"/2015-03-31/functions/pullthrough/invocations", "application/json", strings.NewReader(`{"sweep":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep struct{ Deleted, Kept int }
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil || resp.Header.Get("X-Amz-Function-Error") != "" {
		t.Fatalf("sweep event: got %v, function error %q", err, resp.Header.Get("X-Amz-Function-Error"))
	}
	if rep.Deleted != 1 || rep.Kept == 0 {
		t.Errorf("sweep event: got report %+v, want 1 deleted and the image kept", rep)
	}
	if has(orphan) {
		t.Error("the sweep event left the orphan")
	}
	layers, _ := img.Layers()
	for _, l := range layers {
		d, _ := l.Digest()
		if !has("blobs/sha256/" + d.Hex) {
			t.Errorf("the sweep deleted layer %s of an image used just now", d)
		}
	}
}
