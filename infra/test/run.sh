#!/usr/bin/env bash
# Offline test of infra/terraform: format, validate, `terraform test` (module
# branches and validations with a mocked provider), then apply, re-plan,
# inspect and destroy examples/basic against local stand-ins for AWS:
#
#   moto_server  (through moto_server.py, which adds Lambda's LoggingConfig
#                and CloudWatch's RPC v2 CBOR protocol) IAM, STS, Lambda (+
#                function URL and asynchronous-invocation settings),
#                CloudWatch (dashboard, alarms), CloudWatch Logs, Secrets
#                Manager, KMS and the S3 control plane (bucket policy, public
#                access block, encryption, lifecycle).
#   versitygw    the S3 data plane: a bucket of the same name that the Go side
#                runs the real binary against from PULLTHROUGH_TF_HOOK.
#
# Why the split: versitygw (v1.8.0) answers NotImplemented to
# PutPublicAccessBlock, PutBucketEncryption and PutBucketLifecycleConfiguration,
# so Terraform cannot create the module's bucket there; moto implements them
# but checks no signatures, so it proves nothing about the binary's S3 calls.
#
# Usage: bash infra/test/run.sh   (any directory; the hook runs in the repository root)
#
# Environment:
#   PULLTHROUGH_PACKAGE     zip to deploy when build/lambda/pullthrough-arm64.zip is absent
#   PULLTHROUGH_TF_ENV_OUT  write the function's environment plus the versitygw
#                           endpoint and credentials here, as KEY=VALUE lines
#   PULLTHROUGH_TF_HOOK     command run (bash -c) while the stand-ins are up;
#                           it sees PULLTHROUGH_TF_ENV_OUT
#   PULLTHROUGH_TOOLS       tool cache (default $HOME/.cache/pullthrough/tools)
#   PULLTHROUGH_KEEP_TMP    1 keeps the temporary directory, 0 removes it even
#                           after a failure (by default a failed run keeps it)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# Paths given in the environment are relative to where the caller stood.
absolute() { if [[ $1 == /* ]]; then printf '%s\n' "$1"; else printf '%s\n' "$PWD/$1"; fi; }
[[ -n ${PULLTHROUGH_PACKAGE:-} ]] && PULLTHROUGH_PACKAGE=$(absolute "$PULLTHROUGH_PACKAGE")
[[ -n ${PULLTHROUGH_TF_ENV_OUT:-} ]] && PULLTHROUGH_TF_ENV_OUT=$(absolute "$PULLTHROUGH_TF_ENV_OUT")
cd "$repo"

tools=${PULLTHROUGH_TOOLS:-$HOME/.cache/pullthrough/tools}
VERSITYGW_VERSION=v1.8.0

t0=$SECONDS
step_started=$SECONDS
current_step=setup
timings=()
result=FAIL

say() { printf '\n==> %s\n' "$*"; }
die() {
	printf '\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
	printf '!!! infra test FAILED in step "%s": %s\n' "$current_step" "$*" >&2
	printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
	exit 1
}
step() {
	end_step
	current_step=$1
	step_started=$SECONDS
	say "$1"
}
end_step() {
	if [[ $current_step != setup ]]; then
		timings+=("$(printf '%5ds  %s' $((SECONDS - step_started)) "$current_step")")
	fi
	current_step=
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pullthrough-infra.XXXXXX")
pids=()

cleanup() {
	local rc=$?
	[[ -n $current_step ]] && end_step
	# Never leave stand-ins running; they hold ports and temp files.
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if ((rc != 0)); then
		result=FAIL
		for f in moto.log versitygw.log; do
			if [[ -s $tmp/$f ]]; then
				printf '\n--- last lines of %s ---\n' "$f" >&2
				tail -n 30 "$tmp/$f" >&2
			fi
		done
	fi
	printf '\n---- timings ----\n'
	printf '%s\n' "${timings[@]}"
	printf '%5ds  total\n' $((SECONDS - t0))
	# On failure keep what there is to inspect (logs, state), unless told not to.
	if [[ ${PULLTHROUGH_KEEP_TMP:-} == 1 ]] ||
		[[ $rc -ne 0 && ${PULLTHROUGH_KEEP_TMP:-} != 0 && -n $(ls -A "$tmp") ]]; then
		printf 'kept temporary directory %s\n' "$tmp"
	else
		rm -rf "$tmp"
	fi
	if [[ $result == PASS ]]; then
		printf '\nPASS: infra/test/run.sh\n'
	else
		printf '\nFAIL: infra/test/run.sh\n' >&2
	fi
	if [[ $result != PASS && $rc -eq 0 ]]; then
		rc=1
	fi
	exit "$rc"
}
trap cleanup EXIT

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() { # url name pid
	local i
	for ((i = 0; i < 150; i++)); do
		kill -0 "$3" 2>/dev/null || die "$2 exited during start-up"
		# Any HTTP answer (even 403 for an unsigned request) means it is up.
		if curl -s -o /dev/null --max-time 1 "$1"; then
			return 0
		fi
		sleep 0.2
	done
	die "$2 did not answer on $1 within 30s"
}

# ---------------------------------------------------------------------------
step "tools"

command -v terraform >/dev/null || die "terraform is not installed (expected /usr/local/bin/terraform 1.11)"
command -v moto_server >/dev/null || die "moto_server is not installed (pip install 'moto[server]'); refusing to skip the apply test"
command -v python3 >/dev/null || die "python3 is not installed"
python3 -c 'import moto.server, boto3' 2>/dev/null || die "python3 cannot import moto.server and boto3 (the Python that has moto_server must come first in PATH)"
command -v curl >/dev/null || die "curl is not installed"
if ! command -v jq >/dev/null; then
	echo "jq missing; installing it"
	{ apt-get update -qq && apt-get install -y -qq jq >/dev/null; } || die "jq is missing and could not be installed"
fi

versitygw=$tools/bin/versitygw
if [[ ! -x $versitygw ]]; then
	command -v go >/dev/null || die "versitygw is missing at $versitygw and go is not installed to build it"
	echo "installing versitygw $VERSITYGW_VERSION into $tools/bin"
	GOBIN=$tools/bin go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION" ||
		die "could not install versitygw"
fi

# Builds the provider on first use (about 20 minutes), then only writes the
# CLI configuration. Never use the machine's default TF_CLI_CONFIG_FILE.
TF_CLI_CONFIG_FILE=$(bash "$repo/infra/test/provider.sh") || die "provider.sh failed"
export TF_CLI_CONFIG_FILE
export TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1
unset TF_DATA_DIR TF_WORKSPACE
# sed, not head: head would exit after one line and fail the pipe (SIGPIPE under pipefail).
terraform version | sed -n 1p

# ---------------------------------------------------------------------------
step "README inputs and outputs"
# terraform-docs is refused by the module proxy; the tables are kept by hand.
python3 infra/test/readme_tables.py infra/terraform || die "infra/terraform/README.md tables differ from variables.tf/outputs.tf"

# ---------------------------------------------------------------------------
step "terraform fmt"
terraform fmt -check -recursive -diff infra/ || die "terraform fmt -check found unformatted files (run: terraform fmt -recursive infra/)"

# ---------------------------------------------------------------------------
step "terraform validate"
# Work on a copy so .terraform/, lock files and state never land in the
# repository; the example's "../.." source still resolves inside the copy.
cp -R infra/terraform "$tmp/terraform"
find "$tmp/terraform" -name .terraform -prune -exec rm -rf {} + -o -name '*.tfstate*' -exec rm -f {} +
module=$tmp/terraform
example=$module/examples/basic
# `terraform init` would ask the registry about hashicorp/aws even with
# dev_overrides; `terraform get` only links the local module, and the
# overridden provider needs no installing.
for dir in "$module" "$example"; do
	terraform -chdir="$dir" get -no-color >"$tmp/get.log" 2>&1 ||
		{ cat "$tmp/get.log"; die "terraform get failed in ${dir#"$tmp"/}"; }
done
for dir in "$module" "$example"; do
	name=${dir#"$tmp"/}
	terraform -chdir="$dir" validate -json -no-color >"$tmp/validate.json" 2>"$tmp/validate.err" || true
	# Any diagnostic other than the dev_overrides notice is a defect.
	if ! jq -e '.valid and ([.diagnostics[] | select(.summary != "Provider development overrides are in effect")] | length == 0)' \
		"$tmp/validate.json" >/dev/null 2>&1; then
		cat "$tmp/validate.err" >&2
		jq -r '.diagnostics[] | "\(.severity): \(.summary): \(.detail // "")"' "$tmp/validate.json" >&2 || cat "$tmp/validate.json" >&2
		die "terraform validate failed in $name"
	fi
	echo "valid: $name"
done

# ---------------------------------------------------------------------------
step "terraform test (mocked provider)"
# Branches and variable validations of the module, no AWS API involved.
# modules/node-recipes has no provider at all.
for dir in "$module" "$module/modules/node-recipes"; do
	terraform -chdir="$dir" test -no-color >"$tmp/test.log" 2>&1 ||
		{ cat "$tmp/test.log"; die "terraform test failed in ${dir#"$tmp"/}"; }
	printf '%s: ' "${dir#"$tmp"/}"
	grep -E '^(Success|Failure)!' "$tmp/test.log"
done

# ---------------------------------------------------------------------------
step "start stand-ins"
moto_port=$(free_port)
# moto_server with Lambda's LoggingConfig added; see moto_server.py.
python3 "$repo/infra/test/moto_server.py" -H 127.0.0.1 -p "$moto_port" >"$tmp/moto.log" 2>&1 &
pids+=($!)
moto_url=http://127.0.0.1:$moto_port
wait_http "$moto_url/moto-api/" moto_server "${pids[-1]}"

s3_access=AKIAPULLTHROUGHTEST
s3_secret=$(python3 -c 'import secrets; print(secrets.token_hex(20))')
vgw_port=$(free_port)
mkdir -p "$tmp/versitygw"
"$versitygw" --port "127.0.0.1:$vgw_port" --access "$s3_access" --secret "$s3_secret" \
	--region us-east-1 posix "$tmp/versitygw" >"$tmp/versitygw.log" 2>&1 &
pids+=($!)
vgw_url=http://127.0.0.1:$vgw_port
wait_http "$vgw_url/" versitygw "${pids[-1]}"
echo "moto_server $moto_url, versitygw $vgw_url"

# Credentials and region for Terraform only; keep the user's AWS config out.
export AWS_ACCESS_KEY_ID=$s3_access AWS_SECRET_ACCESS_KEY=$s3_secret AWS_REGION=us-east-1
export AWS_CONFIG_FILE=$tmp/no-aws-config AWS_SHARED_CREDENTIALS_FILE=$tmp/no-aws-credentials
export AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_DEFAULT_REGION AWS_ENDPOINT_URL 2>/dev/null || true

# ---------------------------------------------------------------------------
step "package"
package=$repo/build/lambda/pullthrough-arm64.zip
if [[ -f $package ]]; then
	echo "using the real package $package"
elif [[ -n ${PULLTHROUGH_PACKAGE:-} ]]; then
	package=$PULLTHROUGH_PACKAGE
	[[ -f $package ]] || die "PULLTHROUGH_PACKAGE=$PULLTHROUGH_PACKAGE does not exist"
	echo "using PULLTHROUGH_PACKAGE=$package"
else
	# moto stores the code but never runs it, so any zip with a bootstrap entry will do.
	package=$tmp/placeholder.zip
	python3 - "$package" <<-'PY'
		import sys, zipfile
		with zipfile.ZipFile(sys.argv[1], "w") as z:
		    info = zipfile.ZipInfo("bootstrap")
		    info.external_attr = 0o755 << 16
		    z.writestr(info, "#!/bin/sh\necho placeholder: run make package >&2\nexit 1\n")
	PY
	echo "WARNING: build/lambda/pullthrough-arm64.zip is missing; deploying a placeholder zip (run 'make package' to test the real one)"
fi

# Deploy it as a release would be: an object in S3 that the function's code
# comes from, so the runner needs neither Go nor the zip. moto's Lambda reads
# the code from moto's own S3.
release_bucket=pullthrough-releases
release_key=pullthrough/pullthrough-test-arm64.zip
python3 - "$moto_url" "$release_bucket" "$release_key" "$package" <<-'PY' || die "could not upload the package to moto's S3"
	import sys, boto3
	from botocore.config import Config
	url, bucket, key, path = sys.argv[1:]
	s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))
	s3.create_bucket(Bucket=bucket)
	s3.upload_file(path, bucket, key)
	print(f"uploaded the package to s3://{bucket}/{key}")
PY

cat >"$tmp/test.tfvars.json" <<-JSON
	{
	  "name": "pullthrough-test",
	  "package_s3_bucket": "$release_bucket",
	  "package_s3_key": "$release_key",
	  "force_destroy": true,
	  "publish": true,
	  "upstreams": ["docker.io", "ghcr.io"],
	  "allow_public_access": true,
	  "aws_endpoints": {
	    "cloudwatch": "$moto_url",
	    "iam": "$moto_url",
	    "kms": "$moto_url",
	    "lambda": "$moto_url",
	    "logs": "$moto_url",
	    "s3": "$moto_url",
	    "secretsmanager": "$moto_url",
	    "servicequotas": "$moto_url",
	    "sts": "$moto_url"
	  },
	  "s3_use_path_style": true,
	  "skip_credentials_validation": true,
	  "skip_requesting_account_id": true,
	  "skip_metadata_api_check": true
	}
JSON
tf() { terraform -chdir="$example" "$@"; }
tfv=(-no-color -input=false -var-file="$tmp/test.tfvars.json")

# ---------------------------------------------------------------------------
step "terraform apply"
tf apply -auto-approve "${tfv[@]}" >"$tmp/apply.log" 2>&1 || { cat "$tmp/apply.log"; die "terraform apply failed"; }
grep -E '^Apply complete' "$tmp/apply.log"

# ---------------------------------------------------------------------------
step "terraform plan (no drift)"
set +e
tf plan -detailed-exitcode "${tfv[@]}" >"$tmp/plan.log" 2>&1
plan_rc=$?
set -e
case $plan_rc in
0) echo "no changes" ;;
2)
	cat "$tmp/plan.log"
	die "plan after apply wants changes: the module drifts (see above)"
	;;
*)
	cat "$tmp/plan.log"
	die "terraform plan failed (exit $plan_rc)"
	;;
esac

# ---------------------------------------------------------------------------
step "assertions"
tf show -json >"$tmp/state.json" || die "terraform show -json failed"
tf output -json >"$tmp/outputs.json" || die "terraform output -json failed"

failures=0
assert() { # json file, description, jq filter that must yield true
	local got
	got=$(jq -r "$3" "$1" 2>&1) || got="jq error: $got"
	if [[ $got == true ]]; then
		printf '  ok    %s\n' "$2"
	else
		printf '  FAIL  %s\n        filter: %s\n        got: %s\n' "$2" "$3" "$got" >&2
		failures=$((failures + 1))
	fi
}
state=$tmp/state.json outputs=$tmp/outputs.json
# values of the single resource at a module address
r() { printf '[.values.root_module.child_modules[].resources[] | select(.address == "module.pullthrough.%s")][0].values' "$1"; }

assert "$state" "function URL streams responses" "$(r aws_lambda_function_url.this).invoke_mode == \"RESPONSE_STREAM\""
assert "$state" "function URL needs no signature" "$(r aws_lambda_function_url.this).authorization_type == \"NONE\""
assert "$state" "function URL has no CORS" "($(r aws_lambda_function_url.this).cors // []) | length == 0"
assert "$state" "code comes from the released S3 object, not a local file" "$(r aws_lambda_function.this) | .s3_bucket == \"$release_bucket\" and .s3_key == \"$release_key\" and .filename == null"
assert "$state" "publish: the function URL serves the alias, which points at the published version" "$(r aws_lambda_function_url.this).qualifier == \"live\" and $(r "aws_lambda_alias.this[0]").function_version == $(r aws_lambda_function.this).version and ($(r aws_lambda_function.this).version | test(\"^[0-9]+\$\"))"
assert "$state" "IAM role and policy names carry the region" "$(r "aws_iam_role.this[0]").name == \"pullthrough-test-us-east-1\" and $(r "aws_iam_role_policy.this[0]").name == \"pullthrough-test-us-east-1\""
assert "$state" "runtime is provided.al2023" "$(r aws_lambda_function.this).runtime == \"provided.al2023\""
assert "$state" "handler is bootstrap" "$(r aws_lambda_function.this).handler == \"bootstrap\""
assert "$state" "architectures are [arm64]" "$(r aws_lambda_function.this).architectures == [\"arm64\"]"
assert "$state" "memory 1024 MB, timeout 900 s" "$(r aws_lambda_function.this) | .memory_size == 1024 and .timeout == 900"
assert "$state" "logs are JSON into /aws/lambda/<name>" "$(r aws_lambda_function.this).logging_config[0] | .log_format == \"JSON\" and .log_group == \"/aws/lambda/pullthrough-test\""
assert "$state" "environment has no AWS_ names" "$(r aws_lambda_function.this).environment[0].variables | keys | map(select(startswith(\"AWS_\"))) | length == 0"
assert "$state" "PULLTHROUGH_UPSTREAMS lists both registries, PULLTHROUGH_UPSTREAM is gone" "$(r aws_lambda_function.this).environment[0].variables | .PULLTHROUGH_UPSTREAMS == \"docker.io,ghcr.io\" and (has(\"PULLTHROUGH_UPSTREAM\") | not)"
assert "$state" "PULLTHROUGH_FILL_TIMEOUT is below the timeout" "$(r aws_lambda_function.this).environment[0].variables.PULLTHROUGH_FILL_TIMEOUT == \"14m\""
assert "$state" "PULLTHROUGH_STORE names the bucket" "($(r aws_lambda_function.this).environment[0].variables.PULLTHROUGH_STORE) == (\"s3://\" + $(r "aws_s3_bucket.this[0]").bucket)"
assert "$state" "public access block: all four true" "$(r "aws_s3_bucket_public_access_block.this[0]") | [.block_public_acls, .block_public_policy, .ignore_public_acls, .restrict_public_buckets] == [true, true, true, true]"
assert "$state" "object ownership BucketOwnerEnforced" "$(r "aws_s3_bucket_ownership_controls.this[0]").rule[0].object_ownership == \"BucketOwnerEnforced\""
assert "$state" "default encryption AES256" "$(r "aws_s3_bucket_server_side_encryption_configuration.this[0]").rule[0].apply_server_side_encryption_by_default[0].sse_algorithm == \"AES256\""
assert "$state" "lifecycle aborts incomplete multipart uploads after 1 day" "[$(r "aws_s3_bucket_lifecycle_configuration.this[0]").rule[] | select(.status == \"Enabled\") | .abort_incomplete_multipart_upload[]?.days_after_initiation] == [1]"
assert "$state" "no expiry rule by default" "[$(r "aws_s3_bucket_lifecycle_configuration.this[0]").rule[] | .expiration[]?] | length == 0"
assert "$state" "bucket policy denies non-TLS access" "$(r "aws_s3_bucket_policy.this[0]").policy | fromjson | [.Statement[] | select(.Effect == \"Deny\" and .Condition.Bool[\"aws:SecureTransport\"] == \"false\")] | length == 1"
assert "$state" "log retention 30 days" "$(r aws_cloudwatch_log_group.this).retention_in_days == 30"

# The role policy: the S3 actions must be exactly those the code calls.
policy=$tmp/role-policy.json
jq "$(r "aws_iam_role_policy.this[0]").policy | fromjson" "$state" >"$policy" || die "no role policy in state"
bucket=$(jq -r .bucket_name.value "$outputs")
acts='[.Statement[] | (.Action | if type == "string" then [.] else . end)[]]'
with() { printf '[.Statement[] | select((.Action | if type == "string" then [.] else . end) | any(%s)) | .Resource]' "$1"; }
assert "$policy" "S3 actions are exactly the ones the code calls" \
	"[${acts}[] | select(startswith(\"s3:\"))] | sort == [\"s3:AbortMultipartUpload\", \"s3:DeleteObject\", \"s3:GetObject\", \"s3:ListBucket\", \"s3:PutObject\"]"
assert "$policy" "all actions are exactly the ones the code calls" \
	"[${acts}[]] | sort == [\"lambda:InvokeFunction\", \"logs:CreateLogStream\", \"logs:PutLogEvents\", \"s3:AbortMultipartUpload\", \"s3:DeleteObject\", \"s3:GetObject\", \"s3:ListBucket\", \"s3:PutObject\"]"
assert "$policy" "no wildcard actions" "[${acts}[] | select(contains(\"*\"))] | length == 0"
assert "$policy" "object actions only on the bucket's objects" \
	"$(with '. == "s3:GetObject"') == [\"arn:aws:s3:::$bucket/*\"]"
assert "$policy" "ListBucket only on the bucket" "$(with '. == "s3:ListBucket"') == [\"arn:aws:s3:::$bucket\"]"
assert "$policy" "logs actions only on the function's log group" \
	"$(with 'startswith("logs:")') | length == 1 and (.[0] | tostring | endswith(\":log-group:/aws/lambda/pullthrough-test:*\"))"
assert "$policy" "no secret access without a secret" "[${acts}[] | select(startswith(\"secretsmanager:\"))] | length == 0"
# Built from partition, region and account in the module; must be the very ARN Lambda gave the function.
function_arn=$(jq -r "$(r aws_lambda_function.this).arn" "$state")
assert "$policy" "InvokeFunction only on the function itself (background fills)" \
	"$(with '. == "lambda:InvokeFunction"') == [\"$function_arn\"]"
[[ $failures == 0 ]] || cat "$policy" >&2

# Outputs a user copies into client configuration.
assert "$outputs" "mirror_url has no trailing slash" '.mirror_url.value | test("^https?://[^ ]+[^/]$")'
assert "$outputs" "daemon_json names the mirror" '(.daemon_json.value | fromjson) == {"registry-mirrors": [.mirror_url.value]}'
assert "$outputs" "hosts.toml points at docker hub, pull and resolve only" \
	'.containerd_hosts_toml.value | contains("server = \"https://registry-1.docker.io\"") and contains("capabilities = [\"pull\", \"resolve\"]")'
# shellcheck disable=SC2016 # $o is a jq variable
assert "$outputs" "hosts.toml host section is the mirror" '. as $o | .containerd_hosts_toml.value | contains("[host.\"" + $o.mirror_url.value + "\"]")'

# Node recipes: one hosts.toml per upstream plus _default, each sending
# requests to the mirror first (TestNodeRecipes pulls through such files).
# shellcheck disable=SC2016 # $o is a jq variable
assert "$outputs" "hosts.toml per registry, each with the mirror as a pull/resolve host" \
	'. as $o | .containerd_hosts_toml_by_registry.value | (keys == ["_default", "docker.io", "ghcr.io"]) and all(.[]; contains("[host.\"" + $o.mirror_url.value + "\"]\n  capabilities = [\"pull\", \"resolve\"]"))'
# shellcheck disable=SC2016 # $o is a jq variable
assert "$outputs" "AL2023 user data writes every hosts.toml" \
	'. as $o | .al2023_user_data.value | startswith("MIME-Version: 1.0\n") and contains("/etc/containerd/certs.d/_default/hosts.toml") and contains("/etc/containerd/certs.d/ghcr.io/hosts.toml")'

# The resource policy decides whether the public URL answers at all. AWS turns
# the AddPermission fields into Condition keys; moto stores them as given.
fn=$(jq -r .function_name.value "$outputs")
if python3 - "$moto_url" "$fn" >"$tmp/lambda-policy.json" <<-'PY'; then
	import sys, boto3
	print(boto3.client("lambda", endpoint_url=sys.argv[1], region_name="us-east-1").get_policy(FunctionName=sys.argv[2])["Policy"])
	PY
	assert "$tmp/lambda-policy.json" "resource policy lets anyone call the URL" \
		'[.Statement[] | select(.Action == "lambda:InvokeFunctionUrl" and .Principal == "*" and (.Condition.StringEquals["lambda:FunctionUrlAuthType"] // .FunctionUrlAuthType) == "NONE")] | length == 1'
	assert "$tmp/lambda-policy.json" "resource policy allows InvokeFunction via the URL" \
		'[.Statement[] | select(.Action == "lambda:InvokeFunction" and .Principal == "*" and ((.Condition.Bool["lambda:InvokedViaFunctionUrl"] // .InvokedViaFunctionUrl) | tostring) == "true")] | length == 1'
else
	printf '  FAIL  could not read the function resource policy from moto\n' >&2
	failures=$((failures + 1))
fi

# Asynchronous invocations (background fills) and monitoring, read back from
# moto rather than from the state, which only echoes what Terraform sent.
if python3 - "$moto_url" "$fn" >"$tmp/monitoring.json" <<-'PY'; then
	import json, sys, boto3
	url, fn = sys.argv[1], sys.argv[2]
	lam = boto3.client("lambda", endpoint_url=url, region_name="us-east-1")
	cw = boto3.client("cloudwatch", endpoint_url=url, region_name="us-east-1")
	invoke = lam.get_function_event_invoke_config(FunctionName=fn)
	all_alarms = cw.describe_alarms(AlarmNamePrefix=fn + "-")["MetricAlarms"]
	alarms = [a for a in all_alarms if a["Namespace"] == "pullthrough"]
	function_alarms = [a for a in all_alarms if a["Namespace"] == "AWS/Lambda"]
	body = json.loads(cw.get_dashboard(DashboardName=fn)["DashboardBody"])
	print(json.dumps({
	    "invoke": {k: invoke.get(k) for k in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds")},
	    "alarms": [{k: a.get(k) for k in ("AlarmName", "Namespace", "MetricName", "Dimensions", "Statistic",
	                                      "Period", "EvaluationPeriods", "Threshold", "ComparisonOperator")}
	               for a in alarms],
	    "function_alarms": sorted([a["MetricName"], a["Statistic"], a["Threshold"], a["Dimensions"]] for a in function_alarms),
	    "dashboard": body,
	}))
	PY
	m=$tmp/monitoring.json
	assert "$m" "async invocations: no Lambda retries, events expire after 900 s" \
		'.invoke == {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 900}'
	assert "$m" "one throttling alarm per upstream host" '[.alarms[] | select(.MetricName == "UpstreamThrottled") | .Dimensions | map(select(.Name == "Upstream")) | .[].Value] | sort == ["docker.io", "ghcr.io"]'
	assert "$m" "one fill-failed alarm per upstream host" '[.alarms[] | select(.MetricName == "FillFailures") | .Dimensions | map(select(.Name == "Upstream")) | .[].Value] | sort == ["docker.io", "ghcr.io"]'
	assert "$m" "alarms watch UpstreamThrottled in namespace pullthrough" \
		'[.alarms[] | select(.Namespace == "pullthrough" and .MetricName == "UpstreamThrottled")] | length == 2'
	assert "$m" "alarms fire on Sum >= 1 over one 5-minute period" \
		'all(.alarms[]; .Statistic == "Sum" and .Period == 300 and .EvaluationPeriods == 1 and .Threshold == 1 and .ComparisonOperator == "GreaterThanOrEqualToThreshold")'
	assert "$m" "dashboard charts throttling per upstream host" \
		'[.dashboard.widgets[].properties.metrics[] | select(.[1] == "UpstreamThrottled") | .[5]] | sort == ["docker.io", "ghcr.io"]'
	assert "$m" "function alarms on Errors, Throttles, ConcurrentExecutions and Duration (90% of 900 s)" \
		'.function_alarms == [["ConcurrentExecutions", "Maximum", 40, [{"Name": "FunctionName", "Value": "pullthrough-test"}]], ["Duration", "Maximum", 810000, [{"Name": "FunctionName", "Value": "pullthrough-test"}]], ["Errors", "Sum", 5, [{"Name": "FunctionName", "Value": "pullthrough-test"}]], ["Throttles", "Sum", 1, [{"Name": "FunctionName", "Value": "pullthrough-test"}]]]'
	assert "$outputs" "alarm_arns names the four per-upstream alarms" '.alarm_arns.value | keys == ["pullthrough-test-fill-failed-docker.io", "pullthrough-test-fill-failed-ghcr.io", "pullthrough-test-upstream-throttled-docker.io", "pullthrough-test-upstream-throttled-ghcr.io"]'
	assert "$outputs" "dashboard_url opens the dashboard" '.dashboard_url.value | endswith("#dashboards/dashboard/pullthrough-test")'
else
	printf '  FAIL  could not read invoke config, alarms or dashboard from moto\n' >&2
	failures=$((failures + 1))
fi

((failures == 0)) || die "$failures assertion(s) failed"

# ---------------------------------------------------------------------------
step "hook"
# Terraform made the bucket in moto (see the top of this file); the binary
# gets the same name in versitygw, which checks signatures and expiry.
python3 - "$vgw_url" "$bucket" <<-'PY' || die "could not create bucket in versitygw"
	import sys, boto3
	from botocore.config import Config
	s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))
	s3.create_bucket(Bucket=sys.argv[2])
	s3.head_bucket(Bucket=sys.argv[2])
	print("created bucket", sys.argv[2], "in versitygw")
PY

env_out=${PULLTHROUGH_TF_ENV_OUT:-$tmp/function.env}
{
	tf output -json function_environment | jq -r 'to_entries[] | "\(.key)=\(.value)"'
	printf 'AWS_ENDPOINT_URL_S3=%s\n' "$vgw_url"
	printf 'AWS_ACCESS_KEY_ID=%s\n' "$s3_access"
	printf 'AWS_SECRET_ACCESS_KEY=%s\n' "$s3_secret"
	printf 'AWS_REGION=us-east-1\n'
	printf 'AWS_EC2_METADATA_DISABLED=true\n'
	printf 'PULLTHROUGH_S3_PATH_STYLE=true\n'
} >"$env_out"
grep -q '^PULLTHROUGH_STORE=s3://' "$env_out" || die "function environment lacks PULLTHROUGH_STORE"
echo "wrote $(wc -l <"$env_out") variables to $env_out"
sed -e 's/^\(AWS_SECRET_ACCESS_KEY\)=.*/\1=<redacted>/' "$env_out" | sed 's/^/  /'

if [[ -n ${PULLTHROUGH_TF_HOOK:-} ]]; then
	echo "running PULLTHROUGH_TF_HOOK: $PULLTHROUGH_TF_HOOK"
	PULLTHROUGH_TF_ENV_OUT=$env_out bash -c "$PULLTHROUGH_TF_HOOK" || die "PULLTHROUGH_TF_HOOK failed"
else
	echo "PULLTHROUGH_TF_HOOK not set; skipping"
fi

# ---------------------------------------------------------------------------
step "terraform destroy"
tf destroy -auto-approve "${tfv[@]}" >"$tmp/destroy.log" 2>&1 || { cat "$tmp/destroy.log"; die "terraform destroy failed"; }
grep -E '^Destroy complete' "$tmp/destroy.log"
left=$(tf state list 2>/dev/null | wc -l)
((left == 0)) || die "$left resource(s) left in state after destroy"

end_step
result=PASS
