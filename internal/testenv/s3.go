package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
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
	// CAFile is the PEM certificate a TLS server (StartS3TLS) presents,
	// its own CA; empty for plain HTTP.
	CAFile string
	addr   string
	key    string
	client *http.Client // trusts CAFile
}

// StartS3 starts versitygw on a free port with one bucket.
func StartS3(t testing.TB) *S3Server { return startS3(t, false) }

// StartS3TLS is StartS3 over HTTPS, as S3 is in AWS: the SDK then signs no
// payloads and sends its checksums in trailers. The certificate, for
// 127.0.0.1, is its own CA (CAFile; AWS_CA_BUNDLE in Env).
func StartS3TLS(t testing.TB) *S3Server { return startS3(t, true) }

func startS3(t testing.TB, useTLS bool) *S3Server {
	t.Helper()
	s := &S3Server{Access: "pullthroughtest", Secret: "pullthroughtestsecret", Region: "us-east-1", Bucket: "mirror", Dir: t.TempDir()}
	s.addr = FreeAddr(t)
	s.Endpoint, s.client = "http://"+s.addr, http.DefaultClient
	if useTLS {
		s.Endpoint = "https://" + s.addr
		var roots *x509.CertPool
		s.CAFile, s.key, roots = selfSigned(t)
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: roots}
		s.client = &http.Client{Transport: tr}
		t.Cleanup(tr.CloseIdleConnections)
	}
	s.start(t)
	if _, err := s.Client().CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(s.Bucket)}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	return s
}

func (s *S3Server) start(t testing.TB) {
	t.Helper()
	bin := Tool(t, "versitygw")
	args := []string{"--port", s.addr, "--access", s.Access, "--secret", s.Secret, "--region", s.Region}
	if s.CAFile != "" {
		args = append(args, "--cert", s.CAFile, "--key", s.key)
	}
	s.Proc = Start(t, []string{"VGW_QUIET=true"}, bin, append(args, "posix", s.Dir)...)
	waitHTTP(t, s.client, s.Endpoint, 20*time.Second)
}

// Transport trusts the server's certificate (for following presigned
// URLs to a TLS server); for plain HTTP it is http.DefaultTransport.
func (s *S3Server) Transport() http.RoundTripper {
	if s.client.Transport == nil {
		return http.DefaultTransport
	}
	return s.client.Transport
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
	env := []string{
		"PULLTHROUGH_STORE=" + store,
		"PULLTHROUGH_S3_PATH_STYLE=true",
		"AWS_ENDPOINT_URL_S3=" + s.Endpoint,
		"AWS_ACCESS_KEY_ID=" + s.Access,
		"AWS_SECRET_ACCESS_KEY=" + s.Secret,
		"AWS_REGION=" + s.Region,
		"AWS_EC2_METADATA_DISABLED=true",
	}
	if s.CAFile != "" {
		env = append(env, "AWS_CA_BUNDLE="+s.CAFile)
	}
	return env
}

// Client is an SDK client for assertions and for the store under test.
func (s *S3Server) Client() *s3.Client { return s.ClientAt(s.Endpoint) }

// ClientAt is a client with this server's credentials that sends its
// requests to endpoint: a fault-injecting proxy in front of the server.
func (s *S3Server) ClientAt(endpoint string) *s3.Client {
	o := s3.Options{
		Region:       s.Region,
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.Access, s.Secret, ""),
	}
	if s.CAFile != "" {
		o.HTTPClient = s.client
	}
	return s3.New(o)
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

// selfSigned writes a self-signed ECDSA certificate for 127.0.0.1 and
// localhost, valid for a day, and returns its and its key's paths and a
// pool that trusts it.
func selfSigned(t testing.TB) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "pullthrough test S3"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	return certFile, keyFile, roots
}
