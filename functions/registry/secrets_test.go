package main

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pullthrough/pullthrough/internal/testenv"
)

// Upstream and client credentials read from a Secrets Manager secret (moto
// stands in for the service): the token-protected upstream is reachable with
// them, clients need the secret's token, and no value reaches the log.
func TestCredentialsFromSecretsManager(t *testing.T) {
	s := newStack(t)
	testenv.SeedImage(t, s.reg, "org/private:1", 8<<10, 1)
	s.up.RequireToken("", "robot", "upstream-secret-value")
	moto := testenv.StartMoto(t)
	sm := secretsmanager.New(secretsmanager.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(moto),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
	doc := `{"upstreams":{"registry.test":{"username":"robot","password":"upstream-secret-value"}},"clients":{"tokens":["client-secret-value"]}}`
	if _, err := sm.CreateSecret(context.Background(), &secretsmanager.CreateSecretInput{Name: aws.String("pullthrough/credentials"), SecretString: aws.String(doc)}); err != nil {
		t.Fatal(err)
	}
	mirror, proc := testenv.StartMirror(t, testenv.BuildMirror(t, false), s.env(
		"PULLTHROUGH_UPSTREAMS=registry.test="+s.up.URL.String(),
		"PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET=pullthrough/credentials",
		"AWS_ENDPOINT_URL_SECRETS_MANAGER="+moto,
	)...)

	resp, err := http.Get(mirror + "/v2/org/private/manifests/1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without the client token: got %d, want 401", resp.StatusCode)
	}
	testenv.PullImage(t, mirror, "org/private:1", remote.WithAuth(&authn.Bearer{Token: "client-secret-value"}))
	if s.up.Count(http.MethodGet, "token") == 0 {
		t.Errorf("the upstream's token endpoint was never used")
	}
	for _, secret := range []string{"upstream-secret-value", "client-secret-value"} {
		if strings.Contains(proc.Output(), secret) {
			t.Errorf("%q appears in the mirror's output", secret)
		}
	}
}
