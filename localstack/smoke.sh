#!/usr/bin/env bash
# Pulls an image through the mirror that deploy.sh created in LocalStack and
# checks that the blobs landed in the cache bucket.
#
#   PULLTHROUGH_SMOKE_IMAGE  repository:tag on the upstream (default library/alpine:3.20)
set -euo pipefail
# shellcheck source=localstack/lib.sh
source "$(dirname "$0")/lib.sh"
need curl

crane=$HOME/.cache/pullthrough/tools/bin/crane
[[ -x $crane ]] || crane=$(command -v crane) ||
	die "crane is required: go install github.com/google/go-containerregistry/cmd/crane@v0.22.1"

mirror=$(tf output -raw mirror_url 2>/dev/null) || die "no deployment found; run localstack/deploy.sh"
bucket=$(tf output -raw bucket_name)
host=${mirror#*://}
image=${PULLTHROUGH_SMOKE_IMAGE:-library/alpine:3.20}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "mirror $mirror, image $image"

# The registry version check every client starts with.
code=$(curl -s -o /dev/null -w '%{http_code}' "$mirror/v2/")
[[ $code == 200 || $code == 401 ]] || die "GET $mirror/v2/ answered $code, want 200 or 401"

# LocalStack serves function URLs over plain HTTP, hence --insecure.
# crane checks every blob against its digest while pulling.
digest=$("$crane" --insecure digest "$host/$image") || die "resolving $image through the mirror failed"
echo "resolved $image to $digest"
"$crane" --insecure pull --format=oci "$host/$image" "$tmp/first" || die "first pull (cache miss) failed"
"$crane" --insecure pull --format=oci "$host/$image@$digest" "$tmp/second" || die "second pull (cache hit) failed"

# Every layer and the config must now be objects in the bucket.
if command -v aws >/dev/null; then
	objects=$(aws --endpoint-url "$endpoint" s3 ls "s3://$bucket" --recursive | wc -l)
	((objects > 0)) || die "the cache bucket $bucket is empty after two pulls"
	echo "cache bucket $bucket holds $objects objects"
else
	echo "aws CLI not installed; not inspecting the bucket"
fi

echo "smoke test PASSED: pulled $image through $mirror"
