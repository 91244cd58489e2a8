#!/usr/bin/env bash
# Applies infra/terraform/examples/basic to the running LocalStack, with the
# same module and example as a real deployment; only endpoints differ.
set -euo pipefail
# shellcheck source=localstack/lib.sh
source "$(dirname "$0")/lib.sh"
need terraform curl tar

curl -fsS "$endpoint/_localstack/health" >/dev/null || die "LocalStack is not running on $endpoint (run localstack/up.sh)"

# The host's architecture, whatever `make package` built by default (arm64):
# LocalStack runs the function in a container on this machine.
arch=$(lambda_arch)
if [[ -n ${PULLTHROUGH_PACKAGE:-} ]]; then
	package=$PULLTHROUGH_PACKAGE
	[[ -f $package ]] || die "PULLTHROUGH_PACKAGE=$package does not exist"
else
	package=$repo/build/lambda/pullthrough-$arch.zip
	echo "building the $arch package for this host"
	need make go
	make -C "$repo" --no-print-directory package ARCH="$arch" || die "make package ARCH=$arch failed"
fi

# Refresh the working copy's configuration, keep its .terraform and state.
mkdir -p "$work"
find "$work" -name '*.tf' -not -path '*/.terraform/*' -delete
tar -C "$repo/infra/terraform" --exclude=.terraform --exclude='*.tfstate*' --exclude=.terraform.lock.hcl -cf - . |
	tar -C "$work" -xf -

# allow_public_access: the mirror is reachable on this machine only. Service
# Quotas is not among the stand-in's endpoints: skip the concurrency check.
cat >"$state_dir/localstack.tfvars.json" <<JSON
{
  "name": "pullthrough",
  "architecture": "$arch",
  "package_path": "$package",
  "force_destroy": true,
  "allow_public_access": true,
  "check_concurrency_quota": false,
  "extra_environment": {
    "PULLTHROUGH_S3_PATH_STYLE": "true"
  },
  "aws_endpoints": {
    "cloudwatch": "$endpoint",
    "iam": "$endpoint",
    "kms": "$endpoint",
    "lambda": "$endpoint",
    "logs": "$endpoint",
    "s3": "$endpoint",
    "secretsmanager": "$endpoint",
    "sts": "$endpoint"
  },
  "s3_use_path_style": true,
  "skip_credentials_validation": true,
  "skip_requesting_account_id": true,
  "skip_metadata_api_check": true
}
JSON

tf init -input=false
tf apply -auto-approve -input=false -var-file="$state_dir/localstack.tfvars.json"
echo
echo "mirror: $(tf output -raw mirror_url)"
