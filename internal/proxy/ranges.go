package proxy

import (
	"strconv"
	"strings"
)

// byteRange is one satisfiable range of a blob: n bytes from off.
type byteRange struct{ off, n int64 }

// parseByteRange reads a Range header of one byte range (RFC 9110 section
// 14.1.2: "bytes=first-last", "bytes=first-" or "bytes=-suffix") against a
// blob of size bytes. ok is false for anything else (several ranges, other
// units, a malformed value): such a request is answered from the store,
// whose http.ServeContent implements the rest of the RFC. unsatisfiable
// reports a well-formed range that starts past the end (416).
func parseByteRange(h string, size int64) (r byteRange, ok, unsatisfiable bool) {
	spec, found := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !found || size < 0 || strings.Contains(spec, ",") {
		return byteRange{}, false, false
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return byteRange{}, false, false
	}
	num := func(s string) (int64, bool) {
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil && n >= 0 && s != "" && s[0] != '+'
	}
	if first == "" { // the last `last` bytes
		n, ok := num(last)
		if !ok {
			return byteRange{}, false, false
		}
		if n == 0 || size == 0 {
			return byteRange{}, true, true
		}
		n = min(n, size)
		return byteRange{off: size - n, n: n}, true, false
	}
	off, ok := num(first)
	if !ok {
		return byteRange{}, false, false
	}
	end := size - 1
	if last != "" {
		e, ok := num(last)
		if !ok || e < off {
			return byteRange{}, false, false
		}
		end = min(e, size-1)
	}
	if off >= size {
		return byteRange{}, true, true
	}
	return byteRange{off: off, n: end - off + 1}, true, false
}
