package proxy

import (
	"testing"
	"time"
)

// The proxy owns its lease rule: a LeaseTTL under the minimum is an error
// from New, never a panic in time.NewTicker at the first fill.
func TestTableLeaseTTLMinimum(t *testing.T) {
	up, err := NewUpstream(UpstreamConfig{URL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ttl    time.Duration
		wantOK bool
	}{{0, true}, {2 * time.Nanosecond, false}, {time.Second, false}, {MinLeaseTTL, true}, {time.Minute, true}} {
		_, err := New(Config{LeaseTTL: tc.ttl}, nil, []*Upstream{up}, nil)
		if (err == nil) != tc.wantOK {
			t.Errorf("LeaseTTL %s: got error %v, want ok %v", tc.ttl, err, tc.wantOK)
		}
	}
}
