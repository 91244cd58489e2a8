package proxy_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullthrough/pullthrough/internal/proxy"
)

// A GET of a blob the upstream does not have writes nothing to the store:
// the fill takes its lease only once the upstream has confirmed the blob
// (a link from a manifest it served, or a HEAD). Before, each request for a random digest cost a lease PutObject and
// DeleteObject (issue "An upstream is not trusted", class 3) before the
// upstream's 404.
func TestBlobMissWritesNothingBeforeTheUpstreamAnswers(t *testing.T) {
	st, s3front := countedS3(t)
	_, base, up, _ := mirrorOn(t, st, proxy.Config{ManifestTTL: time.Hour}, nil)
	s3front.Reset()
	for i := range 5 {
		d := digest.FromString("no such blob " + string(rune('a'+i)))
		resp := do(t, http.MethodGet, base+"/v2/org/app/blobs/"+d.String(), nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("got %d, want 404 for a blob the upstream does not have", resp.StatusCode)
		}
	}
	if n := up.Count("", "blob"); n != 5 {
		t.Errorf("got %d upstream blob requests, want 5 (one each)", n)
	}
	for _, method := range []string{http.MethodPut, http.MethodPost, http.MethodDelete} {
		if n := s3front.CountMethod(method); n != 0 {
			t.Errorf("got %d S3 %s requests for 5 unknown blobs, want 0", n, method)
		}
	}
}
