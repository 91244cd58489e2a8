// Command registry is pullthrough: a pull-through cache for container
// registries. Under AWS Lambda (AWS_LAMBDA_RUNTIME_API set) it serves a
// function URL in RESPONSE_STREAM mode; anywhere else it is a plain HTTP
// server. Configuration is the PULLTHROUGH_* environment (see README.md).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/lambdaurl"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/store"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pullthrough:", strings.ReplaceAll(err.Error(), "\n", "; "))
		os.Exit(1)
	}
}

func run() error {
	cfg, err := parseConfig(os.Getenv)
	if err != nil {
		return err
	}
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel))
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	if cfg.CredentialsSecret != "" {
		if err := loadSecret(ctx, &cfg); err != nil {
			return err
		}
	}
	var ups []*proxy.Upstream
	for _, uc := range cfg.Upstreams {
		up, err := proxy.NewUpstream(uc)
		if err != nil {
			return fmt.Errorf("PULLTHROUGH_UPSTREAMS: %w", err)
		}
		ups = append(ups, up)
	}
	cfg.Proxy.EmbeddedMetrics = cfg.Lambda
	h, err := proxy.New(cfg.Proxy, st, ups, logger)
	if err != nil {
		return err
	}

	if cfg.Lambda {
		lambdaurl.Start(h)
		return nil
	}
	srv := &http.Server{
		Addr:              cfg.Addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	logger.Info("listening", "addr", cfg.Addr, "store", cfg.Store, "upstreams", len(ups))
	select {
	case err := <-errc:
		return fmt.Errorf("PULLTHROUGH_ADDR: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// openStore builds the store named by PULLTHROUGH_STORE. S3 endpoint,
// region and credentials come from the SDK's standard environment.
func openStore(ctx context.Context, cfg Config) (proxy.Store, error) {
	scheme, rest, err := splitStore(cfg.Store)
	if err != nil {
		return nil, fmt.Errorf("PULLTHROUGH_STORE: %w", err)
	}
	if scheme == "file" {
		return store.NewFilesystem(rest)
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("aws configuration: %w", err)
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) { o.UsePathStyle = cfg.S3PathStyle })
	bucket, prefix, _ := strings.Cut(rest, "/")
	return store.NewS3(client, bucket, prefix), nil
}
