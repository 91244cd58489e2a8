package cache

import (
	"strings"

	"github.com/opencontainers/go-digest"
)

// KeyDigest parses "<prefix><algorithm>/<encoded>".
func KeyDigest(key, prefix string) (digest.Digest, bool) {
	alg, enc, ok := strings.Cut(strings.TrimPrefix(key, prefix), "/")
	if !ok || !strings.HasPrefix(key, prefix) {
		return "", false
	}
	dg := digest.NewDigestFromEncoded(digest.Algorithm(alg), enc)
	return dg, dg.Validate() == nil
}

// TrailingDigest parses the digest at the end of a link or referrers key
// (".../<algorithm>/<encoded>").
func TrailingDigest(key string) (digest.Digest, bool) {
	i := strings.LastIndex(key, "/")
	if i < 0 {
		return "", false
	}
	j := strings.LastIndex(key[:i], "/")
	dg := digest.NewDigestFromEncoded(digest.Algorithm(key[j+1:i]), key[i+1:])
	return dg, dg.Validate() == nil
}
