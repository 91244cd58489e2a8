package store_test

import (
	"context"
	"iter"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/store"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// Probe proves a store usable before any client is answered; a broken one
// is reported with S3's own reason, and a working one is left as it was.
func TestS3Probe(t *testing.T) {
	srv := testenv.StartS3(t)
	dead := "http://" + testenv.FreeAddr(t)
	client := func(endpoint, secret string, pathStyle bool) *s3.Client {
		return s3.New(s3.Options{
			Region:       srv.Region,
			BaseEndpoint: aws.String(endpoint),
			UsePathStyle: pathStyle,
			Credentials:  credentials.NewStaticCredentialsProvider(srv.Access, secret, ""),
		})
	}
	for _, tc := range []struct {
		name string
		st   *store.S3
		want []string // in the error; none: no error
	}{
		{"working", store.NewS3(client(srv.Endpoint, srv.Secret, true), srv.Bucket, "cache"), nil},
		{"no such bucket", store.NewS3(client(srv.Endpoint, srv.Secret, true), "no-such-bucket", ""), []string{"s3://no-such-bucket", "PutObject", "404 NoSuchBucket"}},
		{"wrong secret key", store.NewS3(client(srv.Endpoint, "wrong-secret", true), srv.Bucket, "cache"), []string{"s3://mirror/cache", "PutObject", "403 SignatureDoesNotMatch", "secret key"}},
		{"dead endpoint", store.NewS3(client(dead, srv.Secret, true), srv.Bucket, ""), []string{"PutObject", dead, "connection refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := tc.st.Probe(ctx)
			t.Logf("%v", err)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want one with %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "wrong-secret") || strings.Contains(err.Error(), srv.Secret) {
				t.Errorf("got %q, which holds a secret key", err)
			}
		})
	}
	if keys := srv.Keys(t); len(keys) != 0 {
		t.Errorf("got %v left in the bucket, want nothing", keys)
	}
}

// Probe leaves nothing behind in either store: the sweep and the lease
// readers never see a probe object.
func TestProbeLeavesNothing(t *testing.T) {
	srv := testenv.StartS3(t)
	fsys, err := store.NewFilesystem(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		st   interface {
			Probe(context.Context) error
			List(context.Context, string) iter.Seq2[proxy.ObjectInfo, error]
		}
	}{
		{"filesystem", fsys},
		{"S3", store.NewS3(srv.Client(), srv.Bucket, "cache")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			for range 2 { // a second process probes the same store
				if err := tc.st.Probe(ctx); err != nil {
					t.Fatalf("got %v, want no error", err)
				}
			}
			for o, err := range tc.st.List(ctx, "") {
				if err != nil {
					t.Fatal(err)
				}
				t.Errorf("got %s left in the store, want nothing", o.Key)
			}
		})
	}
}

// Processes that start together probe one store at once (Lambda scaling
// out, a test's several mirrors): every probe passes.
func TestConcurrentProbes(t *testing.T) {
	srv := testenv.StartS3(t)
	st := store.NewS3(srv.Client(), srv.Bucket, "")
	for round := range 40 {
		errs := make(chan error, 8)
		for range 8 {
			go func() { errs <- st.Probe(context.Background()) }()
		}
		for range 8 {
			if err := <-errs; err != nil {
				t.Errorf("round %d: got %v, want no error", round, err)
			}
		}
	}
}
