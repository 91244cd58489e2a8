#!/usr/bin/env bash
# Builds the Terraform AWS provider into a cache outside the repository and
# writes a Terraform CLI configuration that points at it through dev_overrides.
#
# The provider is built from source because this project's machines have no
# access to the Terraform registry, only to the Go module proxy. The build is
# slow (about 20 minutes and 12 GB of memory the first time), so it is skipped
# when the cached binary already matches the pinned version.
#
# Usage: bash infra/test/provider.sh            build if needed, print the CLI config path
#        eval "$(bash infra/test/provider.sh --env)"   also export TF_CLI_CONFIG_FILE
#
# Environment:
#   PULLTHROUGH_TOOLS   cache root (default $HOME/.cache/pullthrough/tools)
#   PROVIDER_GOFLAGS    extra GOFLAGS for the build, e.g. -p=1 when memory is short
set -euo pipefail

# Unreleased 6.48.0 of the AWS provider; the newest version the module proxy serves.
PROVIDER_MODULE=github.com/hashicorp/terraform-provider-aws
PROVIDER_VERSION=v1.60.1-0.20260602190131-5f2286d6d836

tools=${PULLTHROUGH_TOOLS:-$HOME/.cache/pullthrough/tools}
dir=$tools/terraform-provider
bin=$dir/terraform-provider-aws
stamp=$dir/VERSION
cli_config=$dir/terraformrc

log() { printf 'provider.sh: %s\n' "$*" >&2; }

mkdir -p "$dir"

# Two callers (a developer and a test run) must not build at the same time.
exec 9>"$dir/.lock"
if ! flock -n 9; then
	log "another build holds $dir/.lock; waiting"
	flock 9
fi

if [[ -x $bin && -f $stamp && $(<"$stamp") == "$PROVIDER_VERSION" ]]; then
	log "cached: $bin ($PROVIDER_VERSION)"
else
	command -v go >/dev/null || { log "ERROR: go is not installed"; exit 1; }
	log "building $PROVIDER_MODULE@$PROVIDER_VERSION into $dir (about 20 min)"
	start=$SECONDS
	rm -f "$stamp"
	# nice/ionice: other builds share this machine; the provider build must not starve them.
	GOBIN=$dir GOFLAGS="${PROVIDER_GOFLAGS:-}" \
		nice -n 10 ionice -c3 go install "$PROVIDER_MODULE@$PROVIDER_VERSION" 2>&1 |
		sed 's/^/provider.sh: go: /' >&2
	[[ -x $bin ]] || { log "ERROR: build finished but $bin is missing"; exit 1; }
	printf '%s\n' "$PROVIDER_VERSION" >"$stamp"
	log "built in $((SECONDS - start))s"
fi

# dev_overrides makes Terraform use the local binary for hashicorp/aws without
# `terraform init`; everything else would go to the registry, which we never need.
cat >"$cli_config.tmp" <<CFG
provider_installation {
  dev_overrides {
    "hashicorp/aws" = "$dir"
  }
  direct {}
}
CFG
mv "$cli_config.tmp" "$cli_config"

if [[ ${1:-} == --env ]]; then
	printf 'export TF_CLI_CONFIG_FILE=%q\n' "$cli_config"
else
	printf '%s\n' "$cli_config"
fi
