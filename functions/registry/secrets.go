package main

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// loadSecret reads the credentials secret once per process (a Lambda cold
// start) and merges it into cfg.
func loadSecret(ctx context.Context, cfg *Config) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("aws configuration: %w", err)
	}
	out, err := secretsmanager.NewFromConfig(awsCfg).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(cfg.CredentialsSecret)})
	if err != nil {
		return fmt.Errorf("PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET: read %s: %w", cfg.CredentialsSecret, err)
	}
	return applySecret(cfg, []byte(aws.ToString(out.SecretString)))
}
