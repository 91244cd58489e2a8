#!/usr/bin/env bash
# Pulls an image through the mirror that deploy.sh created in LocalStack,
# then pulls it again the way containerd does (every request carries
# ?ns=<registry>) and checks that the second pull is served from the cache
# (X-Pullthrough-Cache: hit), and that the blobs landed in the cache bucket.
#
#   PULLTHROUGH_SMOKE_IMAGE  repository:tag on Docker Hub (default library/alpine:3.20)
#   PULLTHROUGH_SMOKE_NS     registry the image belongs to (default docker.io)
#   PULLTHROUGH_SMOKE_MIRROR test this mirror URL instead of the LocalStack deployment
set -euo pipefail
# shellcheck source=localstack/lib.sh
source "$(dirname "$0")/lib.sh"
need curl jq

crane=$HOME/.cache/pullthrough/tools/bin/crane
[[ -x $crane ]] || crane=$(command -v crane) ||
	die "crane is required: go install github.com/google/go-containerregistry/cmd/crane@v0.22.1"

if [[ -n ${PULLTHROUGH_SMOKE_MIRROR:-} ]]; then
	# Any running mirror, e.g. `go run ./functions/registry` over S3.
	mirror=${PULLTHROUGH_SMOKE_MIRROR%/} bucket=
else
	mirror=$(tf output -raw mirror_url 2>/dev/null) || die "no deployment found; run localstack/deploy.sh"
	bucket=$(tf output -raw bucket_name)
fi
host=${mirror#*://}
image=${PULLTHROUGH_SMOKE_IMAGE:-library/alpine:3.20}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "mirror $mirror, image $image"

# The registry version check every client starts with.
code=$(curl -s -o /dev/null -w '%{http_code}' "$mirror/v2/")
[[ $code == 200 || $code == 401 ]] || die "GET $mirror/v2/ answered $code, want 200 or 401"

# The same image as containerd asks for it from a hosts.toml mirror: the tag,
# then the platform's manifest, then each blob, every request with ?ns=.
# Blob answers are 307 redirects to S3 (a hit) or to a fill; never follow
# them here, only read the mirror's own answer.
ns=${PULLTHROUGH_SMOKE_NS:-docker.io}
repo=${image%:*} tag=${image##*:}
accept='application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'
os_arch=$(lambda_arch) # only to pick a child manifest; any platform will do
[[ $os_arch == x86_64 ]] && os_arch=amd64

# ask METHOD PATH: prints "status cache" for the mirror's answer, body in $tmp/body.
ask() {
	curl -sS -X "$1" -o "$tmp/body" -D "$tmp/headers" -H "Accept: $accept" \
		--max-time 300 "$mirror/v2/$repo/$2?ns=$ns" >/dev/null || die "$1 $2?ns=$ns failed"
	printf '%s %s\n' "$(awk 'NR == 1 {print $2}' "$tmp/headers")" \
		"$(tr -d '\r' <"$tmp/headers" | awk -F': ' 'tolower($1) == "x-pullthrough-cache" {print $2}')"
}

# pull PASS: one containerd-style pull; prints one "what status cache" line per request.
pull() {
	local got child blob
	got=$(ask GET "manifests/$tag")
	echo "manifests/$tag $got"
	child=$(jq -r --arg a "$os_arch" 'if .manifests then ([.manifests[] | select(.platform.os == "linux" and .platform.architecture == $a)][0] // .manifests[0]).digest else empty end' "$tmp/body")
	if [[ -n $child ]]; then
		got=$(ask GET "manifests/$child")
		echo "manifests/$child $got"
	fi
	jq -r '.config.digest, .layers[].digest' "$tmp/body" >"$tmp/blobs"
	[[ -s $tmp/blobs ]] || die "no blobs in the manifest of $image"
	while read -r blob; do
		got=$(ask GET "blobs/$blob")
		echo "blobs/$blob $got"
	done <"$tmp/blobs"
}

echo "first pull with ?ns=$ns:"
pull | tee "$tmp/pass1" | sed 's/^/  /'
echo "second pull with ?ns=$ns:"
pull | tee "$tmp/pass2" | sed 's/^/  /'

# The second pull: the tag is served from the cache within the manifest TTL,
# the digest manifests and every blob are hits (blobs as 307s to S3).
failures=0
while read -r what status cache; do
	case $what in
	manifests/sha256:*) want_status=200 want_cache=hit ;;
	manifests/*) want_status=200 want_cache='hit|revalidated' ;;
	blobs/*) want_status=307 want_cache=hit ;;
	esac
	if [[ $status != "$want_status" ]] || ! [[ $cache =~ ^($want_cache)$ ]]; then
		printf 'second pull: %s answered %s X-Pullthrough-Cache: %s, want %s %s\n' "$what" "$status" "${cache:-none}" "$want_status" "$want_cache" >&2
		failures=$((failures + 1))
	fi
done <"$tmp/pass2"
((failures == 0)) || die "$failures request(s) of the second pull were not served from the cache"
echo "second pull with ?ns=$ns: every answer came from the cache"

# LocalStack serves function URLs over plain HTTP, hence --insecure.
# crane checks every blob against its digest while pulling.
digest=$("$crane" --insecure digest "$host/$image") || die "resolving $image through the mirror failed"
echo "resolved $image to $digest"
"$crane" --insecure pull --format=oci "$host/$image" "$tmp/first" || die "first pull (cache miss) failed"
"$crane" --insecure pull --format=oci "$host/$image@$digest" "$tmp/second" || die "second pull (cache hit) failed"

# Every layer and the config must now be objects in the bucket.
if [[ -n $bucket ]] && command -v aws >/dev/null; then
	objects=$(aws --endpoint-url "$endpoint" s3 ls "s3://$bucket" --recursive | wc -l)
	((objects > 0)) || die "the cache bucket $bucket is empty after two pulls"
	echo "cache bucket $bucket holds $objects objects"
else
	echo "aws CLI not installed; not inspecting the bucket"
fi

echo "smoke test PASSED: pulled $image through $mirror"
