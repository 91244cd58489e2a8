package store_test

import (
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pullthrough/pullthrough/internal/field"
	"github.com/pullthrough/pullthrough/internal/store"
)

// Each rule of UploadTuning.Validate names its field: S3's multipart part
// limits and the concurrency range; the defaults pass.
func TestTableUploadTuningValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tuning store.UploadTuning
		want   string // the field named; "" for a valid tuning
	}{
		{"defaults", store.UploadTuning{PartSize: store.DefaultPartSize, Concurrency: store.DefaultUploadConcurrency}, ""},
		{"bounds", store.UploadTuning{PartSize: store.MinPartSize, Concurrency: store.MaxUploadConcurrency}, ""},
		{"part under S3's minimum", store.UploadTuning{PartSize: store.MinPartSize - 1, Concurrency: 1}, "PartSize"},
		{"part over S3's maximum", store.UploadTuning{PartSize: store.MaxPartSize + 1, Concurrency: 1}, "PartSize"},
		{"no concurrency", store.UploadTuning{PartSize: store.DefaultPartSize}, "Concurrency"},
		{"too much concurrency", store.UploadTuning{PartSize: store.DefaultPartSize, Concurrency: store.MaxUploadConcurrency + 1}, "Concurrency"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.tuning.Validate()
			var fe *field.Error
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("got %v, want no error", err)
			case tc.want != "" && (!errors.As(err, &fe) || fe.Field != tc.want):
				t.Errorf("got %v, want a field error for %s", err, tc.want)
			}
			// The store refuses what Validate refuses.
			st := store.NewS3(s3.New(s3.Options{Region: "us-east-1"}), "bucket", "") // sends no request
			if serr := st.SetUploadTuning(tc.tuning); (serr == nil) != (tc.want == "") {
				t.Errorf("SetUploadTuning: got %v, want an error exactly when Validate has one", serr)
			}
		})
	}
}
