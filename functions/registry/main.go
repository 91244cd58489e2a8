// Command registry is pullthrough: a pull-through cache for container
// registries. Under AWS Lambda (AWS_LAMBDA_RUNTIME_API set) it serves a
// function URL in RESPONSE_STREAM mode; anywhere else it is a plain HTTP
// server. Configuration is the PULLTHROUGH_* environment (see README.md).
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/pullthrough/pullthrough/internal/doctor"
)

// version is the release version, stamped by `make release` and `make
// package` (-ldflags -X main.version=...).
var version = "dev"

func main() {
	os.Exit(exit(run(os.Args[1:]), os.Stderr))
}

func run(args []string) error {
	cmd, rest, err := command(args)
	if err != nil || cmd == "help" || cmd == "version" {
		return err
	}
	// doctor is a client of a mirror: it needs none of the server's setup.
	if cmd == "doctor" {
		return doctor.Command(context.Background(), rest, os.Getenv, os.Stdout)
	}
	cfg, err := parseConfig(environ(os.Environ()))
	if err != nil {
		return initFailed(cfg, err)
	}
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel))
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	metrics := newLocalMetrics() // Lambda has its EMF log lines instead
	if !cfg.Lambda {
		cfg.Proxy.OnRequest, cfg.Proxy.OnFillFailure = metrics.observe, metrics.fillFailed
	}
	h, err := newProxy(ctx, cfg, cmd != "warm" && cmd != "sweep", logger)
	if err != nil {
		return initFailed(cfg, err)
	}
	switch {
	case cmd == "warm":
		return warm(ctx, h, rest, os.Stdout)
	case cmd == "sweep":
		return sweepCommand(ctx, h, cfg.Retention, rest, os.Stdout)
	case cfg.Lambda:
		serveLambda(h, cfg.Retention)
		return nil
	}
	return serveLocal(ctx, cfg.Addr, cfg.MaxConns, localHandler(h, metrics), logger)
}

// initFailed reports a start-up failure to Lambda as the function's init
// error, so that Lambda answers invocations with it (and logs it) instead
// of a bare "Runtime exited"; anywhere else main prints it.
func initFailed(cfg Config, err error) error {
	if cfg.Lambda {
		reportInitError(cfg.RuntimeAPI, err)
	}
	return err
}
