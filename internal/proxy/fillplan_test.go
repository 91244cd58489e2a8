package proxy

import "testing"

func TestTableFillPlan(t *testing.T) {
	const large = 1 << 30
	local := func(policy string) fillLimits { return fillLimits{policy: policy, largeSize: large} }
	lambda := func(policy string) fillLimits {
		return fillLimits{policy: policy, largeSize: large, requestBound: true}
	}
	client := func(size int64, cdn bool) fillFacts { return fillFacts{size: size, redirectable: true, cdn: cdn} }
	opened := func(size int64) fillFacts { return fillFacts{size: size} } // the GET is open, or a warm
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
