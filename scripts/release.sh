#!/usr/bin/env bash
# Builds the release artifacts: pullthrough-<version>-{arm64,x86_64}.zip (each
# holding the Lambda `bootstrap`) and SHA256SUMS, byte-identical wherever and
# however often they are built from the same commit:
#   - the Go build is reproducible with -trimpath, -buildvcs=false and an
#     empty build id (https://go.dev/blog/rebuild);
#   - the zip gets a fixed file time (the commit's time, as SOURCE_DATE_EPOCH
#     in https://reproducible-builds.org/specs/source-date-epoch/), a fixed
#     mode, no extra fields (-X) and no directory entries (-D), with TZ=UTC
#     because zip stores local DOS times.
#
# Usage: bash scripts/release.sh [OUT_DIR]     (default build/release)
# Environment: VERSION (default `git describe --tags --always --dirty`),
#              SOURCE_DATE_EPOCH (default the HEAD commit's time), GO.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/release}
GO=${GO:-go}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
export TZ=UTC

mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/pullthrough-*.zip "$out/SHA256SUMS"
for arch in arm64 x86_64; do
	case $arch in arm64) goarch=arm64 ;; x86_64) goarch=amd64 ;; esac
	stage=$(mktemp -d)
	GOOS=linux GOARCH=$goarch CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
		"$GO" build -tags lambda.norpc -trimpath \
		-ldflags="-s -w -buildid= -X main.version=$VERSION" \
		-o "$stage/bootstrap" ./functions/registry
	chmod 0755 "$stage/bootstrap"
	touch -d "@$SOURCE_DATE_EPOCH" "$stage/bootstrap"
	zip_name="pullthrough-$VERSION-$arch.zip"
	(cd "$stage" && zip -q -X -D "$out/$zip_name" bootstrap)
	rm -rf "$stage"
done
(cd "$out" && sha256sum pullthrough-"$VERSION"-*.zip >SHA256SUMS)
cat "$out/SHA256SUMS"
