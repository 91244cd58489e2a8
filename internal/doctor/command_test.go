package doctor

import (
	"context"
	"strings"
	"testing"
)

// Usage and argument errors never print a credential taken from the
// environment, and need no mirror.
func TestCommandArguments(t *testing.T) {
	env := map[string]string{"PULLTHROUGH_DOCTOR_TOKEN": "s3cr3t", "PULLTHROUGH_DOCTOR_USER": "alice:pa55"}
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"help", []string{"-h"}, ""},
		{"no URL", nil, "exactly one mirror URL"},
		{"two URLs", []string{"http://a", "http://b"}, "exactly one mirror URL"},
		{"bad user", []string{"--user", "nocolon", "http://127.0.0.1:1"}, "USER:PASS"},
		{"bad image", []string{"--image", "UPPER:case:x", "http://127.0.0.1:1"}, "image"},
		{"bad URL", []string{"ftp://mirror"}, "mirror URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			err := Command(context.Background(), tc.args, func(k string) string { return env[k] }, &out)
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("got error %v, want one containing %q", err, tc.wantErr)
			}
			if got := out.String() + errString(err); strings.Contains(got, "s3cr3t") || strings.Contains(got, "pa55") {
				t.Errorf("a credential was printed: %s", got)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
