package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3Server is a running versitygw: a real S3 API with strict SigV4,
// presigned-URL expiry, multipart uploads and conditional writes.
type S3Server struct {
	Endpoint string // http://127.0.0.1:PORT
	Access   string
	Secret   string
	Region   string
	Bucket   string
	Dir      string // posix backend root
	Proc     *Process
	addr     string
}

// StartS3 starts versitygw on a free port with one bucket.
func StartS3(t testing.TB) *S3Server {
	t.Helper()
	s := &S3Server{Access: "pullthroughtest", Secret: "pullthroughtestsecret", Region: "us-east-1", Bucket: "mirror", Dir: t.TempDir()}
	s.addr = FreeAddr(t)
	s.Endpoint = "http://" + s.addr
	s.start(t)
	if _, err := s.Client().CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(s.Bucket)}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	return s
}

func (s *S3Server) start(t testing.TB) {
	t.Helper()
	bin := Tool(t, "versitygw")
	s.Proc = Start(t, []string{"VGW_QUIET=true"}, bin, "--port", s.addr, "--access", s.Access, "--secret", s.Secret, "--region", s.Region, "posix", s.Dir)
	WaitHTTP(t, s.Endpoint, 20*time.Second)
}

// Stop kills the server; Restart brings it back on the same port and data.
func (s *S3Server) Stop() { s.Proc.Kill() }

// Restart starts the server again after Stop.
func (s *S3Server) Restart(t testing.TB) { s.start(t) }

// Env is the environment a mirror process needs to use this server.
func (s *S3Server) Env(prefix string) []string {
	store := "s3://" + s.Bucket
	if prefix != "" {
		store += "/" + prefix
	}
	return []string{
		"PULLTHROUGH_STORE=" + store,
		"PULLTHROUGH_S3_PATH_STYLE=true",
		"AWS_ENDPOINT_URL_S3=" + s.Endpoint,
		"AWS_ACCESS_KEY_ID=" + s.Access,
		"AWS_SECRET_ACCESS_KEY=" + s.Secret,
		"AWS_REGION=" + s.Region,
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// Client is an SDK client for assertions and for the store under test.
func (s *S3Server) Client() *s3.Client { return s.ClientAt(s.Endpoint) }

// ClientAt is a client with this server's credentials that sends its
// requests to endpoint: a fault-injecting proxy in front of the server.
func (s *S3Server) ClientAt(endpoint string) *s3.Client {
	return s3.New(s3.Options{
		Region:       s.Region,
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.Access, s.Secret, ""),
	})
}

// Keys lists every object key in the bucket.
func (s *S3Server) Keys(t testing.TB) []string {
	t.Helper()
	var keys []string
	p := s3.NewListObjectsV2Paginator(s.Client(), &s3.ListObjectsV2Input{Bucket: aws.String(s.Bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys
}

// PendingUploads counts multipart uploads not completed or aborted.
func (s *S3Server) PendingUploads(t testing.TB) int {
	t.Helper()
	out, err := s.Client().ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(s.Bucket)})
	if err != nil {
		t.Fatalf("list uploads: %v", err)
	}
	return len(out.Uploads)
}
