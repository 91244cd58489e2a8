package proxy

import (
	"context"
	"log/slog"
	"regexp"
)

// urlQuery matches the query string of an http(s) URL inside free text,
// such as the cause of a *url.Error ("Get \"https://cdn/...?X-Amz-...\"").
var urlQuery = regexp.MustCompile(`(?i)(https?://[^\s"'<>?#]*)\?[^\s"'<>#]*`)

// redactURLs replaces the query of every URL in s: signed URLs (S3
// presigned, CDN) carry their credential there (X-Amz-Signature,
// X-Amz-Security-Token, Docker Hub's CDN signatures).
func redactURLs(s string) string {
	return urlQuery.ReplaceAllString(s, "$1?REDACTED")
}

// redactingHandler keeps URL query strings out of every log line the proxy
// writes, whatever attribute they arrive in: error causes quote the URLs
// they failed on, and no call site has to remember.
type redactingHandler struct{ slog.Handler }

func (h redactingHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, redactURLs(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h redactingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = redactAttr(a)
	}
	return redactingHandler{h.Handler.WithAttrs(red)}
}

func (h redactingHandler) WithGroup(name string) slog.Handler {
	return redactingHandler{h.Handler.WithGroup(name)}
}

func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, redactURLs(v.String()))
	case slog.KindGroup:
		g := v.Group()
		red := make([]any, len(g))
		for i, ga := range g {
			red[i] = redactAttr(ga)
		}
		return slog.Group(a.Key, red...)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, redactURLs(err.Error()))
		}
	}
	return a
}
