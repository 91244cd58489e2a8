package fill

import (
	"testing"
)

func TestTableFillPlan(t *testing.T) {
	const large = 1 << 30
	local := func(policy string) fillLimits { return fillLimits{policy: policy, largeSize: large} }
	lambda := func(policy string) fillLimits {
		return fillLimits{policy: policy, largeSize: large, requestBound: true}
	}
	client := func(size int64, cdn bool) fillFacts { return fillFacts{size: size, redirectable: true, cdn: cdn} }
	opened := func(size int64) fillFacts { return fillFacts{size: size} } // the GET is open, or a warm
	// A client's whole-blob GET, its upstream GET open (or its size known).
	streaming := func(size int64) fillFacts { return fillFacts{size: size, streamable: true} }
	rated := func(size int64, rate float64) fillFacts {
		return fillFacts{size: size, redirectable: true, cdn: true, streamable: true, rate: rate}
	}
	tests := []struct {
		name string
		lim  fillLimits
		f    fillFacts
		want fillPlan
	}{
		{"wait policy, small", local(PolicyWait), client(-1, true), planInline},
		{"wait policy, large on a CDN upstream, local", local(PolicyWait), client(large, true), planInline},
		{"redirect policy sends every client upstream", local(PolicyUpstream), client(-1, false), planRedirect},
		{"auto, upstream without a CDN: no HEAD", local(PolicyAuto), client(-1, false), planInline},
		{"auto, CDN upstream, size unknown: ask", local(PolicyAuto), client(-1, true), planAskSize},
		{"auto, CDN upstream, small", local(PolicyAuto), client(large-1, true), planInline},
		{"auto, CDN upstream, large", local(PolicyAuto), client(large, true), planRedirect},
		{"auto, large, no redirect possible, local", local(PolicyAuto), opened(large), planInline},
		{"auto, large, no redirect possible, Lambda", lambda(PolicyAuto), opened(large), planBackground},
		{"wait policy, Lambda, GET open, small", lambda(PolicyWait), opened(large - 1), planInline},
		{"wait policy, Lambda, GET open, large", lambda(PolicyWait), opened(large), planBackground},
		{"wait policy, Lambda, no Content-Length", lambda(PolicyWait), opened(-1), planInline},
		{"redirect policy, Lambda, upstream gave no URL, large", lambda(PolicyUpstream), opened(large), planBackground},
		{"Lambda, size known from a HEAD, large, redirect refused", lambda(PolicyAuto), fillFacts{size: large, cdn: true}, planBackground},
		{"warm in Lambda, large", lambda(PolicyAuto), opened(large), planBackground},
		{"warm in the local server, large", local(PolicyAuto), opened(large), planInline},
		{"background job in Lambda fills itself", lambda(PolicyWait), fillFacts{size: large, background: true}, planInline},
		{"local client GET streams, size unknown", local(PolicyWait), fillFacts{size: -1, redirectable: true, streamable: true}, planStream},
		{"local client GET streams, large", local(PolicyWait), streaming(large), planStream},
		{"local Range request does not stream", local(PolicyWait), client(-1, false), planInline},
		{"Lambda streams a small blob", lambda(PolicyWait), streaming(streamLimit - 1), planStream},
		{"Lambda does not stream past the uncapped 6 MB", lambda(PolicyWait), streaming(streamLimit), planInline},
		{"Lambda, size unknown: open the GET first", lambda(PolicyWait), streaming(-1), planInline},
		{"Lambda, large streamable blob goes to the background", lambda(PolicyWait), streaming(large), planBackground},
		{"auto, CDN, measured fast: a big blob is waited for", local(PolicyAuto), rated(large, large/10), planStream},
		{"auto, CDN, measured slow: a small blob is redirected", local(PolicyAuto), rated(64<<20, 1<<20), planRedirect},
		{"auto, CDN, measured, just within the budget", lambda(PolicyAuto), rated(30<<20, 1<<20), planInline},
		{"auto, CDN, measured, just past the budget", lambda(PolicyAuto), rated(30<<20+1, 1<<20), planRedirect},
		{"background job never redirects", lambda(PolicyUpstream), fillFacts{size: -1, redirectable: true, background: true}, planInline},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := planFill(tc.lim, tc.f); got != tc.want {
				t.Errorf("planFill(%+v, %+v): got %s, want %s", tc.lim, tc.f, got, tc.want)
			}
		})
	}
}

// TestAutoRedirectsAtTheMeasuredRate: what auto does with a 10 GiB blob
// at a measured 200 MiB/s (over 30 s: redirect).
func TestAutoRedirectsAtTheMeasuredRate(t *testing.T) {
	f := fillFacts{size: 10 << 30, redirectable: true, cdn: true, rate: float64(200 << 20)}
	if got := planFill(fillLimits{policy: PolicyAuto, largeSize: 1 << 40}, f); got != planRedirect {
		t.Errorf("10 GiB at the measured rate: got %s, want redirect", got)
	}
}
