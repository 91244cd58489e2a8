#!/usr/bin/env bash
# Destroys the LocalStack deployment (if any) and stops LocalStack.
set -euo pipefail
# shellcheck source=localstack/lib.sh
source "$(dirname "$0")/lib.sh"

if [[ -f $example/terraform.tfstate && -f $state_dir/localstack.tfvars.json ]] &&
	curl -fsS "$endpoint/_localstack/health" >/dev/null 2>&1; then
	tf destroy -auto-approve -input=false -var-file="$state_dir/localstack.tfvars.json" ||
		echo "terraform destroy failed; LocalStack state is discarded anyway" >&2
fi
# LocalStack keeps no state across restarts by default, so neither may we.
rm -f "$example/terraform.tfstate" "$example/terraform.tfstate.backup"
# compose.yaml insists on the token even for "down", which does not use it.
LOCALSTACK_AUTH_TOKEN=${LOCALSTACK_AUTH_TOKEN:-unused} compose down --remove-orphans
