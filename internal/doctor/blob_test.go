package doctor

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The clock check reads S3's Date against the presigned URL's X-Amz-Date
// and X-Amz-Expires, and against this machine's clock.
func TestClockResult(t *testing.T) {
	server := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	presigned := func(signed time.Time, expires string) *url.URL {
		return &url.URL{Scheme: "https", Host: "bucket.s3.example", Path: "/blobs/x",
			RawQuery: url.Values{"X-Amz-Date": {signed.Format("20060102T150405Z")}, "X-Amz-Expires": {expires}, "X-Amz-Signature": {"secret"}}.Encode()}
	}
	for _, tc := range []struct {
		name   string
		local  time.Time
		url    *url.URL
		want   Status
		saying string
	}{
		{"fresh URL, clocks agree", server, presigned(server.Add(-2*time.Minute), "900"), Pass, "signed 2m0s before"},
		{"signer an hour ahead", server, presigned(server.Add(time.Hour), "900"), Fail, "after the store's clock"},
		{"signer two minutes ahead", server, presigned(server.Add(2*time.Minute), "900"), Warn, "after the store's clock"},
		{"expired when fetched", server, presigned(server.Add(-20*time.Minute), "900"), Fail, "expired"},
		{"this machine off by ten minutes", server.Add(10 * time.Minute), presigned(server, "900"), Warn, "10m0s off"},
		{"no presigned URL", server.Add(time.Second), nil, Pass, "no presigned URL"},
		{"no presigned URL, this machine off", server.Add(-3 * time.Minute), nil, Warn, "3m0s off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := answer{status: 200, header: http.Header{"Date": {server.Format(http.TimeFormat)}}, at: tc.local}
			r := clockResult("clock", a, tc.url)
			if r.Status != tc.want || !strings.Contains(r.Detail, tc.saying) {
				t.Errorf("got %s %q, want %s saying %q", r.Status, r.Detail, tc.want, tc.saying)
			}
			if strings.Contains(r.Detail+r.Hint, "secret") {
				t.Errorf("the signature leaked: %s", r.Detail)
			}
		})
	}
}
