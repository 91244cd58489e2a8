package proxy_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type response struct {
	*http.Response
	body []byte
}

func do(t *testing.T, method, url string, h http.Header) response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	return send(t, req)
}

func send(t *testing.T, req *http.Request) response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", req.Method, req.URL, err)
	}
	return response{Response: resp, body: body}
}

func assertOCIError(t *testing.T, resp response, code string) {
	t.Helper()
	if resp.Request.Method == http.MethodHead {
		return
	}
	var body struct {
		Errors []struct{ Code, Message string }
	}
	if err := json.Unmarshal(resp.body, &body); err != nil || len(body.Errors) != 1 {
		t.Fatalf("got body %q, want an OCI error", resp.body)
	}
	if body.Errors[0].Code != code {
		t.Errorf("got code %s, want %s (%s)", body.Errors[0].Code, code, body.Errors[0].Message)
	}
}

func v1Platform() v1.Platform { return v1.Platform{OS: "linux", Architecture: "amd64"} }

// logBuffer collects log lines; the proxy writes the request line after the
// response has gone, so reads and writes race without the lock.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func basic(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}

// bearer is a go-containerregistry authenticator sending a static token.
type bearer struct{ token string }

func (b *bearer) Authorization() (*authn.AuthConfig, error) {
	return &authn.AuthConfig{RegistryToken: b.token}, nil
}

func describe(t *testing.T, img v1.Image) v1.Descriptor {
	t.Helper()
	d, err := partial.Descriptor(img)
	if err != nil {
		t.Fatal(err)
	}
	return *d
}

func typesMediaType(s string) types.MediaType { return types.MediaType(s) }

// Reset forgets the lines logged so far.
func (l *logBuffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

// requestLines waits for n request log lines and returns them parsed.
func requestLines(t *testing.T, m *mirror, n int) []map[string]any {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); strings.Count(m.Logs.String(), `"msg":"request"`) < n && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(m.Logs.String()), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("log line is not JSON: %s", l)
		}
		if v["msg"] == "request" {
			lines = append(lines, v)
		}
	}
	if len(lines) != n {
		t.Fatalf("got %d request lines, want %d", len(lines), n)
	}
	return lines
}
