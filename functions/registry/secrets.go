package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/pullthrough/pullthrough/internal/proxy"
)

// loadSecret reads the credentials secret once per process (a Lambda cold
// start) and merges it into cfg.
func loadSecret(ctx context.Context, awsCfg aws.Config, cfg *Config) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := secretsmanager.NewFromConfig(awsCfg).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(cfg.CredentialsSecret)})
	if err != nil {
		return fmt.Errorf("PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET: read %s: %w", cfg.CredentialsSecret, err)
	}
	return applySecret(cfg, []byte(aws.ToString(out.SecretString)))
}

// secretDoc is the JSON held in PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET.
type secretDoc struct {
	Upstreams map[string]struct {
		Username string `json:"username"`
		Password string `json:"password"`
		Token    string `json:"token"`
	} `json:"upstreams"`
	Clients struct {
		Tokens []string          `json:"tokens"`
		Users  map[string]string `json:"users"`
	} `json:"clients"`
}

// applySecret merges credentials from the secret's JSON over the
// environment's. The same rules apply as to the environment's credentials
// (proxy.AccessConfig.Validate, proxy.UpstreamConfig.Validate): an empty
// token or password would leave the mirror open (or shared by anyone who
// guesses the user name) while the operator believes it protected. It never
// echoes secret values in its errors.
func applySecret(c *Config, data []byte) error {
	const name = "PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET"
	var doc secretDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return errors.New(name + ": the secret is not the documented JSON document")
	}
	clients := proxy.AccessConfig{Tokens: doc.Clients.Tokens, Users: doc.Clients.Users}
	if err := clients.Validate(); err != nil {
		return fmt.Errorf("%s: clients: %w", name, err)
	}
	for host, cred := range doc.Upstreams {
		i := upstreamIndex(c.Upstreams, host)
		if i < 0 {
			return fmt.Errorf("%s: credentials for %q, which is not a configured upstream", name, host)
		}
		up := &c.Upstreams[i]
		if cred.Username != "" || cred.Password != "" {
			up.Username, up.Password = cred.Username, cred.Password
		}
		if cred.Token != "" {
			up.Token = cred.Token
		}
		if err := up.Validate(); err != nil {
			return fmt.Errorf("%s: upstreams[%q]: %w", name, host, err)
		}
	}
	c.Proxy.Access.Tokens = append(c.Proxy.Access.Tokens, doc.Clients.Tokens...)
	for u, p := range doc.Clients.Users {
		if c.Proxy.Access.Users == nil {
			c.Proxy.Access.Users = map[string]string{}
		}
		c.Proxy.Access.Users[u] = p
	}
	return nil
}

// upstreamIndex is the index of the upstream serving host
// (case-insensitive), or -1.
func upstreamIndex(ups []proxy.UpstreamConfig, host string) int {
	for i, u := range ups {
		if strings.EqualFold(u.Host, host) {
			return i
		}
	}
	return -1
}
