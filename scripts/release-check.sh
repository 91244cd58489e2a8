#!/usr/bin/env bash
# Checks that `make release` is reproducible: builds the release twice from
# two copies of HEAD at different paths, the second with an empty Go build
# cache (as on another machine), and compares SHA256SUMS. Exits non-zero and
# prints both lists when they differ.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
export VERSION=${VERSION:-$(git describe --tags --always 2>/dev/null || echo dev)}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
for i in 1 2; do
	mkdir -p "$tmp/src$i/tree-$i"
	git archive HEAD | tar -x -C "$tmp/src$i/tree-$i"
done
(cd "$tmp/src1/tree-1" && bash scripts/release.sh "$tmp/out1" >/dev/null)
(cd "$tmp/src2/tree-2" && GOCACHE="$tmp/gocache" bash scripts/release.sh "$tmp/out2" >/dev/null)
if ! cmp -s "$tmp/out1/SHA256SUMS" "$tmp/out2/SHA256SUMS"; then
	echo "release-check: builds differ" >&2
	diff "$tmp/out1/SHA256SUMS" "$tmp/out2/SHA256SUMS" >&2 || true
	exit 1
fi
echo "release-check: two builds of $VERSION are byte-identical:"
cat "$tmp/out1/SHA256SUMS"
