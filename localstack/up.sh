#!/usr/bin/env bash
# Starts LocalStack (pinned in compose.yaml) and waits until it is healthy.
set -euo pipefail
# shellcheck source=localstack/lib.sh
source "$(dirname "$0")/lib.sh"

[[ -n ${LOCALSTACK_AUTH_TOKEN:-} ]] ||
	die "LOCALSTACK_AUTH_TOKEN is not set; current LocalStack images refuse to start without one (see localstack/README.md)"
need curl
compose up -d --wait
curl -fsS "$endpoint/_localstack/health" >/dev/null || die "LocalStack is not answering on $endpoint"
echo "LocalStack is up on $endpoint"
