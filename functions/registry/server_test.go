package main

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/testenv"
)

// The local server holds at most PULLTHROUGH_MAX_CONNECTIONS connections:
// clients that open connections and say nothing cannot take the rest. The
// next client is served as soon as one of them goes.
func TestLocalServerConnectionCap(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the mirror binary")
	}
	mirror, _ := testenv.StartMirror(t, testenv.BuildMirror(t, false), "PULLTHROUGH_MAX_CONNECTIONS=2", "PULLTHROUGH_STORE=file://"+t.TempDir())
	addr := strings.TrimPrefix(mirror, "http://")
	var hogs []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("GET /v2/ HTTP/1.1\r\n")) // and never finish the request
		hogs = append(hogs, c)
	}
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := client.Get(mirror + "/v2/"); err == nil {
		resp.Body.Close()
		t.Fatalf("with 2 of 2 connections taken: got %d, want no answer", resp.StatusCode)
	}
	hogs[0].Close()
	defer hogs[1].Close()
	client.Timeout = 5 * time.Second
	resp, err := client.Get(mirror + "/v2/")
	if err != nil {
		t.Fatalf("after a connection closed: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("after a connection closed: got %d, want 200", resp.StatusCode)
	}
}

// A client that stops reading a response is dropped once a write has made
// no progress for the idle timeout, instead of holding the handler forever.
func TestIdleWritesDropAStalledReader(t *testing.T) {
	werr := make(chan error, 1)
	srv := httptest.NewServer(idleWrites(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		buf := make([]byte, 1<<20)
		for range 256 { // far more than the socket buffers hold
			if _, err := w.Write(buf); err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	}), 300*time.Millisecond))
	defer srv.Close()
	c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")) // then read nothing
	select {
	case err := <-werr:
		var ne net.Error
		if err == nil || !(errors.As(err, &ne) && ne.Timeout()) && !strings.Contains(err.Error(), "timeout") {
			t.Errorf("got write error %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler is still writing to a client that reads nothing")
	}
}
