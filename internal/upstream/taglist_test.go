package upstream

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestTagListIsRegistryJSON: a tag list body reaches the client only as
// the mirror encodes it again from a registry's tag list: the extra fields
// of an upstream (or of whatever a redirect led to) are dropped, and a
// body that is no tag list, or names a tag no registry can hold, is not a
// registry answer.
func TestTagListIsRegistryJSON(t *testing.T) {
	for _, tc := range []struct {
		name, contentType, body string
		want                    string // "" for ErrNotRegistry
	}{
		{"registry JSON", "application/json", `{"name":"org/app","tags":["1","latest"]}`, `{"name":"org/app","tags":["1","latest"]}`},
		{"extra fields dropped", "application/json", `{"name":"org/app","tags":["1"],"AccessKeyId":"AKIAIOSFODNN7EXAMPLE","Token":"x"}`, `{"name":"org/app","tags":["1"]}`},
		{"null tags", "application/json", `{"name":"org/app","tags":null}`, `{"name":"org/app","tags":[]}`},
		{"HTML page", "text/html", `<html><script>alert(1)</script></html>`, ""},
		{"markup in a tag", "application/json", `{"name":"org/app","tags":["<script>alert(1)</script>"]}`, ""},
		{"not an object", "application/json", `["1","2"]`, ""},
		{"metadata credentials", "text/plain", "ec2-instance-role\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			c, err := New(Config{URL: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			body, _, err := c.Tags(context.Background(), "org/app", "")
			switch {
			case tc.want == "" && !errors.Is(err, ErrNotRegistry):
				t.Errorf("got %q, %v, want ErrNotRegistry", body, err)
			case tc.want != "" && (err != nil || string(body) != tc.want):
				t.Errorf("got %q, %v, want %s", body, err, tc.want)
			}
		})
	}
}
