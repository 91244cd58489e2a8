package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// probeDir is where Probe writes: under leases/, the one prefix the
// function's role may delete in (infra/terraform/iam.tf), in a directory
// no fill lease uses (those are leases/<xx>/blobs/...). The probe object
// is "{}", which the sweep reads as a lease of nothing.
const probeDir = "leases/probe"

// versioned is the conditional small-object contract both stores have.
type versioned interface {
	PutIfAbsent(ctx context.Context, key string, data []byte) (string, error)
	ReadVersion(ctx context.Context, key string) ([]byte, string, error)
	DeleteIf(ctx context.Context, key, version string) error
}

// probe writes a new object, reads it back and deletes it, with the calls
// fills and leases make (a conditional create, a read, a conditional
// delete): three requests that prove, before any client is answered, that
// the store is there and that these credentials may read, write and delete
// in it. A write that transient may refuse is tried once more, under another key.
func probe(ctx context.Context, st versioned, explain func(error) string, transient func(error) bool) error {
	data := []byte("{}")
	var key, version string
	var err error
	for try := 0; try < 2; try++ {
		var b [8]byte
		rand.Read(b[:])
		key = probeDir + "/" + hex.EncodeToString(b[:])
		if version, err = st.PutIfAbsent(ctx, key, data); err == nil || !transient(err) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("cannot write (a probe object at %s): %s", key, explain(err))
	}
	got, _, err := st.ReadVersion(ctx, key)
	if err != nil {
		return fmt.Errorf("cannot read back the probe object %s it wrote: %s", key, explain(err))
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("the probe object %s read back as %q, want %q", key, got, data)
	}
	if err := st.DeleteIf(ctx, key, version); err != nil {
		return fmt.Errorf("cannot delete the probe object %s it wrote: %s", key, explain(err))
	}
	return nil
}

// Probe checks that the directory can be written, read and deleted in.
func (f *Filesystem) Probe(ctx context.Context) error {
	never := func(error) bool { return false }
	if err := probe(ctx, f, func(err error) string { return err.Error() }, never); err != nil {
		return fmt.Errorf("store file://%s: %w", f.root, err)
	}
	return nil
}

// Probe checks with three requests (a PutObject with If-None-Match, a
// GetObject, a DeleteObject with If-Match, all under <prefix>/leases/)
// that the bucket exists at the endpoint and that the credentials may
// read, write and delete in it. Its error carries S3's own reason: the
// status, error code and message, or the network error.
func (s *S3) Probe(ctx context.Context) error {
	if err := probe(ctx, s, explainS3, transientS3); err != nil {
		where := s.bucket
		if s.prefix != "" {
			where += "/" + s.prefix
		}
		return fmt.Errorf("store s3://%s: %w", where, err)
	}
	return nil
}

// explainS3 is an S3 error in one line: the operation, S3's status, code
// and message with what usually causes that code; or, when no answer came,
// the request's URL (no query) and the network error.
func explainS3(err error) string {
	op := ""
	var oe *smithy.OperationError
	if errors.As(err, &oe) {
		op = oe.Operation() + ": "
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		status := ""
		var re *smithyhttp.ResponseError
		if errors.As(err, &re) {
			status = fmt.Sprintf("%d ", re.HTTPStatusCode())
		}
		msg := fmt.Sprintf("%s%s%s", op, status, ae.ErrorCode())
		if m := ae.ErrorMessage(); m != "" {
			msg += ": " + m
		}
		if h := s3Hints[ae.ErrorCode()]; h != "" {
			msg += " (" + h + ")"
		}
		return msg
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		u, _, _ := strings.Cut(ue.URL, "?")
		return fmt.Sprintf("%s%s %s: %v (no answer from the endpoint: check AWS_ENDPOINT_URL_S3, AWS_REGION and PULLTHROUGH_S3_PATH_STYLE)", op, ue.Op, u, ue.Err)
	}
	return err.Error()
}

// transientS3 is an answer worth one more try: a 5xx (the SDK retried it
// already), or a 409, which S3 servers on a file system (versitygw's posix
// backend) give a write whose parent directory a concurrent delete just
// removed, as when two processes start and probe at once.
func transientS3(err error) bool {
	var re *smithyhttp.ResponseError
	return errors.As(err, &re) && (re.HTTPStatusCode() == 409 || re.HTTPStatusCode() >= 500)
}

// s3Hints says what usually causes an S3 error code at start.
var s3Hints = map[string]string{
	"NoSuchBucket":                 "no such bucket at this endpoint: check the bucket in PULLTHROUGH_STORE, AWS_ENDPOINT_URL_S3 and PULLTHROUGH_S3_PATH_STYLE",
	"SignatureDoesNotMatch":        "the secret key does not match the access key: check the AWS credentials",
	"InvalidAccessKeyId":           "the access key is unknown to this endpoint: check the AWS credentials",
	"ExpiredToken":                 "the AWS session credentials have expired",
	"AccessDenied":                 "the credentials may not do this here: the role needs s3:PutObject, s3:GetObject and s3:DeleteObject on <prefix>/leases/* (infra/terraform/iam.tf)",
	"PermanentRedirect":            "the bucket is in another region: check AWS_REGION",
	"AuthorizationHeaderMalformed": "the bucket is in another region: check AWS_REGION",
	"NotImplemented":               "this S3 server lacks conditional writes (If-None-Match, If-Match), which fill leases need",
}
