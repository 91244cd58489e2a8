package main

import "testing"

// The AWS configuration is loaded (once) exactly when an AWS service is
// used; a local server on a directory never reads it.
func TestNeedsAWS(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want bool
	}{
		{"directory store", Config{Store: "file:///tmp/cache"}, false},
		{"S3 store", Config{Store: "s3://bucket/prefix"}, true},
		{"credentials secret", Config{Store: "file:///tmp/cache", CredentialsSecret: "pullthrough/creds"}, true},
		{"Lambda with its function name (self-invoked fills)", Config{Store: "file:///tmp/cache", Lambda: true, FunctionName: "pullthrough"}, true},
		{"Lambda without a function name", Config{Store: "file:///tmp/cache", Lambda: true}, false},
	} {
		if got := needsAWS(tc.cfg); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
