package proxy_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// A fill logs when it starts and, while it runs, its bytes and rate at
// intervals, so that a long first pull is visibly working.
func TestLongFillLogsItsProgress(t *testing.T) {
	m, reg := newMirror(t, proxy.Config{ManifestTTL: proxy.RevalidateAlways, FillProgressEvery: 100 * time.Millisecond}, proxy.UpstreamConfig{})
	img := testenv.SeedImage(t, reg, "org/app:1", 4<<20, 1)
	d, _ := layerOf(t, img, 0)
	m.Up.SetFault(testenv.FaultThrottle, "blob") // about 4 MiB/s: a fill of about a second
	resp, err := http.Get(m.URL + "/v2/org/app/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	waitFills(t, m.Proxy)
	logs := m.Logs.String()
	for _, want := range []string{`"msg":"fill started"`, `"msg":"fill progress"`, `"bytes_per_second"`, `"msg":"blob filled"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %s", want)
		}
	}
}
