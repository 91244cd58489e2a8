package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/store"
)

// newProxy builds store, upstreams and handler from the configuration. A
// proxy that will serve is refused if it would be open unasked
// (refuseOpen); warm and sweep serve nothing.
func newProxy(ctx context.Context, cfg Config, serving bool, logger *slog.Logger) (*proxy.Proxy, error) {
	var awsCfg aws.Config
	if needsAWS(cfg) {
		var err error
		if awsCfg, err = loadAWS(ctx); err != nil {
			return nil, err
		}
	}
	st, storeAttrs, err := openStore(cfg, awsCfg)
	if err != nil {
		return nil, err
	}
	if cfg.CredentialsSecret != "" {
		if err := loadSecret(ctx, awsCfg, &cfg); err != nil {
			return nil, err
		}
	}
	if serving {
		if err := refuseOpen(cfg); err != nil {
			return nil, err
		}
	}
	logger.Info("starting", startLine(cfg, storeAttrs)...)
	if err := startupChecks(ctx, st, cfg.Upstreams, logger); err != nil {
		return nil, err
	}
	var ups []*proxy.Upstream
	for _, uc := range cfg.Upstreams {
		up, err := proxy.NewUpstream(uc)
		if err != nil {
			return nil, fmt.Errorf("PULLTHROUGH_UPSTREAMS: %w", err)
		}
		ups = append(ups, up)
	}
	cfg.Proxy.EmbeddedMetrics = cfg.Lambda
	// A RESPONSE_STREAM function URL drops Content-Length on the way out.
	cfg.Proxy.NoContentLength = cfg.Lambda
	cfg.Proxy.MetricsFunction = cfg.FunctionName
	if cfg.Lambda && cfg.FunctionName != "" {
		cfg.Proxy.BackgroundFill = selfInvoker(awsCfg, cfg.FunctionName)
	}
	return proxy.New(cfg.Proxy, st, ups, logger)
}

// needsAWS says whether the configuration uses any AWS service: an S3
// store, the credentials secret, or fills in invocations of the function
// itself. A local server on a directory never loads the AWS configuration.
func needsAWS(cfg Config) bool {
	scheme, _, _ := splitStore(cfg.Store)
	return scheme == "s3" || cfg.CredentialsSecret != "" || (cfg.Lambda && cfg.FunctionName != "")
}

// loadAWS loads the AWS configuration (region, credentials, endpoints from
// the SDK's standard environment) once per process; every AWS client of
// the process is built from it.
func loadAWS(ctx context.Context) (aws.Config, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return aws.Config{}, fmt.Errorf("aws configuration: %w", err)
	}
	return awsCfg, nil
}

// openStore builds the store named by PULLTHROUGH_STORE, and says where
// it is for the start line; an S3 store's client comes from awsCfg.
func openStore(cfg Config, awsCfg aws.Config) (proxy.Store, []any, error) {
	scheme, rest, err := splitStore(cfg.Store)
	if err != nil {
		return nil, nil, fmt.Errorf("PULLTHROUGH_STORE: %w", err)
	}
	where := []any{"url", redactURL(cfg.Store)}
	if scheme == "file" {
		st, err := store.NewFilesystem(rest)
		return st, where, err
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) { o.UsePathStyle = cfg.S3PathStyle })
	endpoint := "AWS default"
	if o := client.Options(); o.BaseEndpoint != nil {
		endpoint = redactURL(*o.BaseEndpoint)
	}
	where = append(where, "endpoint", endpoint, "region", client.Options().Region, "path_style", cfg.S3PathStyle)
	bucket, prefix, _ := strings.Cut(rest, "/")
	st := store.NewS3(client, bucket, prefix)
	if err := st.SetUploadTuning(cfg.S3Upload); err != nil {
		return nil, nil, err
	}
	return st, where, nil
}

// warm is the "warm" subcommand: fill the configured store with images
// ahead of a rollout, printing progress.
func warm(ctx context.Context, p *proxy.Proxy, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("warm", flag.ContinueOnError)
	platforms := fs.String("platform", "", "comma-separated platforms, e.g. linux/amd64,linux/arm64 (default: all)")
	fs.SetOutput(out)
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	if fs.NArg() == 0 {
		return usageError{"usage: pullthrough warm [-platform linux/amd64,...] IMAGE..."}
	}
	for _, image := range fs.Args() {
		fmt.Fprintf(out, "warming %s\n", image)
		if err := p.Warm(ctx, image, list(*platforms), out); err != nil {
			return fmt.Errorf("warm %s: %w", image, err)
		}
	}
	return nil
}
