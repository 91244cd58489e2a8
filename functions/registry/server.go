package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// Limits of the local server (make run). A function URL has its own.
const (
	// writeIdleTimeout drops a client that has not taken any bytes for this
	// long; a whole-response WriteTimeout would cut big layers on slow links.
	writeIdleTimeout = 2 * time.Minute
	// readTimeout bounds reading a request (headers and body; the only body
	// is /warm's small JSON).
	readTimeout = time.Minute
)

// serveLocal runs the plain HTTP server until ctx ends, then shuts it down
// gracefully. At most maxConns connections are open at once: further
// clients wait in the listen backlog (netutil.LimitListener).
func serveLocal(ctx context.Context, addr string, maxConns int, h http.Handler, logger *slog.Logger) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("PULLTHROUGH_ADDR: %w", err)
	}
	srv := &http.Server{
		Handler:           idleWrites(h, writeIdleTimeout),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       readTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(netutil.LimitListener(l, maxConns)) }()
	logger.Info("listening", "addr", l.Addr().String(), "max_connections", maxConns)
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

// idleWrites gives every write of a response d to complete: a client that
// stops reading is dropped after d, one that reads slowly is not.
func idleWrites(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&idleWriter{ResponseWriter: w, rc: http.NewResponseController(w), d: d}, r)
	})
}

type idleWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
	d  time.Duration
}

func (w *idleWriter) Write(b []byte) (int, error) {
	w.rc.SetWriteDeadline(time.Now().Add(w.d))
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (Flush, deadlines).
func (w *idleWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
