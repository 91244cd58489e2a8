# Shared settings for the localstack/*.sh scripts; sourced, not run.
# shellcheck shell=bash disable=SC2034 # variables are for the sourcing scripts

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
compose_file=$repo/localstack/compose.yaml

LOCALSTACK_PORT=${LOCALSTACK_PORT:-4566}
export LOCALSTACK_PORT
# Resolves to 127.0.0.1 in public DNS; inside LocalStack's network it names
# LocalStack itself, so URLs built from it work for the host and for the function.
endpoint=${LOCALSTACK_ENDPOINT:-http://localhost.localstack.cloud:$LOCALSTACK_PORT}

# Terraform working copy and state live outside the repository.
state_dir=${PULLTHROUGH_LOCALSTACK_STATE:-$HOME/.cache/pullthrough/localstack}
work=$state_dir/terraform
example=$work/examples/basic

# LocalStack accepts any credentials; these keep the user's real ones out.
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_PROFILE AWS_SESSION_TOKEN
export TF_IN_AUTOMATION=1 TF_INPUT=0

die() {
	printf '%s: ERROR: %s\n' "$(basename "$0")" "$*" >&2
	exit 1
}

need() {
	local tool
	for tool; do
		command -v "$tool" >/dev/null || die "$tool is required but not installed"
	done
}

compose() {
	need docker
	docker compose version >/dev/null 2>&1 || die "the docker compose plugin is required"
	docker compose -f "$compose_file" "$@"
}

tf() {
	need terraform
	terraform -chdir="$example" "$@"
}

# Host architecture in Lambda's names: LocalStack runs the function in a
# container, and emulating the other architecture is slow or unavailable.
lambda_arch() {
	case $(uname -m) in
	aarch64 | arm64) echo arm64 ;;
	x86_64 | amd64) echo x86_64 ;;
	*) die "unsupported host architecture $(uname -m)" ;;
	esac
}
