package main

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/pullthrough/pullthrough/internal/lambdaharness"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// TestBootstrapWithTerraformEnvironment ties the infrastructure to the
// code: infra/test/run.sh applies the Terraform module against local
// stand-ins and runs this test with PULLTHROUGH_TF_ENV_OUT naming a file with
// the applied function's environment (plus the S3 stand-in's endpoint and
// keys). The real bootstrap runs with exactly that environment, except that
// Docker Hub is replaced by a registry on loopback, and an image is pulled.
// Run alone (`go test ./...`) it has no environment to test and skips.
func TestBootstrapWithTerraformEnvironment(t *testing.T) {
	path := os.Getenv("PULLTHROUGH_TF_ENV_OUT")
	if path == "" {
		t.Skip("run by infra/test/run.sh (make infra-test)")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && k != "" {
			env[k] = v
		}
	}
	for _, k := range []string{"PULLTHROUGH_STORE", "AWS_ENDPOINT_URL_S3"} {
		if env[k] == "" {
			t.Fatalf("%s missing from the Terraform environment %s", k, path)
		}
	}
	if !strings.HasPrefix(env["PULLTHROUGH_STORE"], "s3://") {
		t.Fatalf("the function stores in %q, want an S3 bucket", env["PULLTHROUGH_STORE"])
	}

	reg := testenv.DistributionRegistry(t)
	img := testenv.SeedImage(t, reg, "library/alpine:3.20", 64<<10, 2)
	env["PULLTHROUGH_UPSTREAMS"] = "docker.io=" + reg.String()
	delete(env, "PULLTHROUGH_UPSTREAM")
	var list []string
	for k, v := range env {
		list = append(list, k+"="+v)
	}

	h, err := lambdaharness.New(lambdaharness.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	testenv.Start(t, append(list, "AWS_LAMBDA_RUNTIME_API="+h.RuntimeAPI()), testenv.BuildMirror(t, true))
	want, _ := img.Digest()
	if got := testenv.PullImage(t, h.URL(), "library/alpine:3.20"); got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}
