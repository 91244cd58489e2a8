# Plan-level tests of the module's branches and validations. The provider is
# mocked, so these need no AWS and no stand-ins; infra/test/run.sh covers
# real API round trips against moto.

mock_provider "aws" {
  mock_resource "aws_s3_bucket" {
    defaults = {
      id  = "cache-bucket"
      arn = "arn:aws:s3:::cache-bucket"
    }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = {
      arn = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/pullthrough"
    }
  }
  mock_resource "aws_iam_role" {
    defaults = {
      arn = "arn:aws:iam::123456789012:role/pullthrough"
    }
  }
  mock_resource "aws_secretsmanager_secret" {
    defaults = {
      arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:created-AbCdEf"
    }
  }
  mock_resource "aws_lambda_function_url" {
    defaults = {
      function_url = "https://abc123.lambda-url.us-east-1.on.aws/"
    }
  }
  mock_resource "aws_lambda_alias" {
    defaults = {
      arn = "arn:aws:lambda:us-east-1:123456789012:function:pullthrough:live"
    }
  }
  mock_resource "aws_lambda_function" {
    defaults = {
      arn     = "arn:aws:lambda:us-east-1:123456789012:function:pullthrough"
      version = "7"
    }
  }
  mock_resource "aws_cloudwatch_metric_alarm" {
    defaults = {
      arn = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:mocked"
    }
  }
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }
  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }
  mock_data "aws_region" {
    defaults = {
      region = "us-east-1"
    }
  }
  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }
  # AWS's default regional quota; runs below override it.
  mock_data "aws_servicequotas_service_quota" {
    defaults = {
      value = 1000
    }
  }
}

variables {
  package_path = "tests/empty.zip"
  # Most runs test other branches; the runs named *public_access* and
  # *open_mirror* below test this guard.
  allow_public_access = true
}

run "defaults" {
  assert {
    condition = local.environment == {
      PULLTHROUGH_STORE        = "s3://cache-bucket"
      PULLTHROUGH_UPSTREAM     = "https://registry-1.docker.io"
      PULLTHROUGH_MANIFEST_TTL = "5m"
      PULLTHROUGH_PRESIGN_TTL  = "15m"
      PULLTHROUGH_LOG_LEVEL    = "info"
      PULLTHROUGH_FILL_TIMEOUT = "14m"
      PULLTHROUGH_ALLOW_OPEN   = "true" # the file's allow_public_access
    }
    error_message = "unexpected default environment: ${jsonencode(local.environment)}"
  }
  assert {
    condition     = [for s in data.aws_iam_policy_document.function.statement : s.sid] == ["CacheObjects", "ReleaseFillLeases", "CacheMissesAreNotFound", "Logs", "BackgroundFills"]
    error_message = "default role policy should grant cache objects, ListBucket, logs and self-invocation only"
  }
  assert {
    condition = (
      data.aws_iam_policy_document.function.statement[4].actions == toset(["lambda:InvokeFunction"])
      && data.aws_iam_policy_document.function.statement[4].resources == toset(["arn:aws:lambda:us-east-1:123456789012:function:pullthrough"])
    )
    error_message = "the function may invoke itself, unqualified, and nothing else"
  }
  assert {
    condition     = aws_lambda_function_event_invoke_config.this.maximum_retry_attempts == 0 && aws_lambda_function_event_invoke_config.this.maximum_event_age_in_seconds == 900
    error_message = "background fills must not be retried by Lambda and must expire from the queue after 15 minutes"
  }
  assert {
    condition     = keys(aws_cloudwatch_metric_alarm.upstream_throttled) == ["docker.io"]
    error_message = "the default upstream registry-1.docker.io must get one alarm, keyed docker.io as the binary names it"
  }
  assert {
    condition = alltrue([
      aws_cloudwatch_metric_alarm.upstream_throttled["docker.io"].namespace == "pullthrough",
      aws_cloudwatch_metric_alarm.upstream_throttled["docker.io"].metric_name == "UpstreamThrottled",
      aws_cloudwatch_metric_alarm.upstream_throttled["docker.io"].dimensions == tomap({ Function = var.name, Upstream = "docker.io" }),
      aws_cloudwatch_metric_alarm.upstream_throttled["docker.io"].statistic == "Sum",
      aws_cloudwatch_metric_alarm.upstream_throttled["docker.io"].period == 300,
      aws_cloudwatch_metric_alarm.upstream_throttled["docker.io"].threshold == 1,
      aws_cloudwatch_metric_alarm.upstream_throttled["docker.io"].comparison_operator == "GreaterThanOrEqualToThreshold",
      length(aws_cloudwatch_metric_alarm.upstream_throttled["docker.io"].alarm_actions) == 0,
    ])
    error_message = "the alarm must fire on one throttled request (Sum of UpstreamThrottled >= 1) in 5 minutes"
  }
  assert {
    condition = alltrue([
      keys(aws_cloudwatch_metric_alarm.fill_failed) == ["docker.io"],
      aws_cloudwatch_metric_alarm.fill_failed["docker.io"].metric_name == "FillFailures",
      aws_cloudwatch_metric_alarm.fill_failed["docker.io"].dimensions == tomap({ Function = var.name, Upstream = "docker.io" }),
      aws_cloudwatch_metric_alarm.fill_failed["docker.io"].threshold == 1,
    ])
    error_message = "one failed background fill (Sum of FillFailures >= 1) in 5 minutes must raise an alarm per upstream"
  }
  assert {
    condition = toset(flatten([
      for w in jsondecode(aws_cloudwatch_dashboard.this[0].dashboard_body).widgets : [for m in w.properties.metrics : "${m[0]}/${m[1]}/${m[2]}=${m[3]}/${m[4]}=${m[5]}"]
      ])) == toset([
      for m in ["Hits", "Misses", "StaleServes", "BytesFilled", "UpstreamErrors", "UpstreamThrottled", "UpstreamRateLimitRemaining"] : "pullthrough/${m}/Function=${var.name}/Upstream=docker.io"
    ])
    error_message = "the dashboard must chart every metric the binary emits, for docker.io"
  }
  assert {
    condition     = output.dashboard_url == "https://console.aws.amazon.com/cloudwatch/home?region=us-east-1#dashboards/dashboard/pullthrough"
    error_message = "dashboard_url must open the dashboard in the function's region: ${output.dashboard_url}"
  }
  assert {
    condition = output.alarm_arns == {
      "pullthrough-upstream-throttled-docker.io" = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:mocked"
      "pullthrough-fill-failed-docker.io"        = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:mocked"
    }
    error_message = "alarm_arns must name both per-upstream alarms, the fill-failed one too: ${jsonencode(output.alarm_arns)}"
  }
  assert {
    condition     = length(data.aws_iam_policy_document.function.statement[2].condition) == 0
    error_message = "without a prefix, ListBucket needs no s3:prefix condition"
  }
  assert {
    condition     = data.aws_iam_policy_document.function.statement[0].resources == toset(["arn:aws:s3:::cache-bucket/*"])
    error_message = "object actions must cover the bucket's objects"
  }
  assert {
    condition = (
      !contains(data.aws_iam_policy_document.function.statement[0].actions, "s3:DeleteObject")
      && data.aws_iam_policy_document.function.statement[1].actions == toset(["s3:DeleteObject"])
      && data.aws_iam_policy_document.function.statement[1].resources == toset(["arn:aws:s3:::cache-bucket/leases/*"])
    )
    error_message = "the role may delete fill leases only, never cached blobs or manifests"
  }
  assert {
    condition     = length(aws_s3_bucket_lifecycle_configuration.this[0].rule) == 1
    error_message = "only the abort-multipart rule is on by default"
  }
  assert {
    condition     = aws_lambda_function.this.reserved_concurrent_executions == 50
    error_message = "concurrency must be reserved (and capped) at 50 by default"
  }
  assert {
    condition     = aws_lambda_function.this.logging_config[0].application_log_level == "INFO"
    error_message = "Lambda's log filter must follow log_level"
  }
  assert {
    condition     = one(one(aws_s3_bucket_server_side_encryption_configuration.this[0].rule).apply_server_side_encryption_by_default).sse_algorithm == "AES256"
    error_message = "default encryption must be SSE-S3"
  }
  assert {
    condition     = output.mirror_url == "https://abc123.lambda-url.us-east-1.on.aws"
    error_message = "mirror_url must drop the trailing slash"
  }
  assert {
    condition     = jsondecode(output.daemon_json) == { "registry-mirrors" = ["https://abc123.lambda-url.us-east-1.on.aws"] }
    error_message = "daemon_json must list the mirror"
  }
  assert {
    condition     = output.doctor_command == "pullthrough doctor --image library/alpine:latest --ns docker.io https://abc123.lambda-url.us-east-1.on.aws"
    error_message = "doctor_command must check the mirror with the default image: ${output.doctor_command}"
  }
  assert {
    condition     = length(aws_secretsmanager_secret.upstream_credentials) == 0 && output.upstream_credentials_secret_arn == null
    error_message = "no secret unless asked for"
  }
}

run "defaults_names_alarms_and_recipes" {
  assert {
    condition     = aws_iam_role.this[0].name == "pullthrough-us-east-1" && aws_iam_role_policy.this[0].name == "pullthrough-us-east-1"
    error_message = "the role and its policy must carry the region, so that a second region does not collide"
  }
  assert {
    condition     = aws_lambda_function.this.role == "arn:aws:iam::123456789012:role/pullthrough" && output.role_arn == "arn:aws:iam::123456789012:role/pullthrough"
    error_message = "the function must run with the created role"
  }
  assert {
    condition     = aws_lambda_function.this.filename == "tests/empty.zip" && aws_lambda_function.this.s3_bucket == null && aws_lambda_function.this.source_code_hash == filebase64sha256("tests/empty.zip")
    error_message = "a local zip is uploaded with its hash"
  }
  assert {
    condition     = !aws_lambda_function.this.publish && length(aws_lambda_alias.this) == 0 && aws_lambda_function_url.this.qualifier == null && output.alias_arn == null
    error_message = "without publish there is no alias and the URL serves $LATEST"
  }
  assert {
    condition     = aws_cloudwatch_log_group.this.kms_key_id == null && length(aws_s3_bucket.this) == 1
    error_message = "the log group uses CloudWatch's own encryption and the bucket is created by default"
  }
  assert {
    condition = {
      for k, a in aws_cloudwatch_metric_alarm.function : k => [a.namespace, a.metric_name, a.statistic, a.threshold, a.dimensions.FunctionName]
      } == {
      concurrency = ["AWS/Lambda", "ConcurrentExecutions", "Maximum", 40, "pullthrough"]
      duration    = ["AWS/Lambda", "Duration", "Maximum", 810000, "pullthrough"]
      errors      = ["AWS/Lambda", "Errors", "Sum", 5, "pullthrough"]
      throttles   = ["AWS/Lambda", "Throttles", "Sum", 1, "pullthrough"]
    }
    error_message = "function alarms: errors >= 5, throttles >= 1, concurrency >= 40 (80% of the default 50), duration >= 90% of 900 s"
  }
  assert {
    condition     = keys(output.function_alarm_arns) == ["concurrency", "duration", "errors", "throttles"]
    error_message = "function_alarm_arns must name the four function alarms"
  }
  assert {
    condition     = keys(output.containerd_hosts_toml_by_registry) == ["_default", "docker.io"]
    error_message = "hosts.toml by registry: the upstream plus _default"
  }
  assert {
    condition     = startswith(output.containerd_hosts_toml_by_registry["docker.io"], "server = \"https://registry-1.docker.io\"\n\n[host.\"https://abc123.lambda-url.us-east-1.on.aws\"]\n")
    error_message = "docker.io's hosts.toml must try the mirror, then Docker Hub: ${output.containerd_hosts_toml_by_registry["docker.io"]}"
  }
  assert {
    condition     = yamldecode(output.k3s_registries_yaml).mirrors == { "docker.io" = { endpoint = ["https://abc123.lambda-url.us-east-1.on.aws"] } }
    error_message = "k3s must send docker.io to the mirror"
  }
  assert {
    condition     = strcontains(output.al2023_user_data, "path: \"/etc/containerd/certs.d/docker.io/hosts.toml\"") || strcontains(output.al2023_user_data, "\"path\": \"/etc/containerd/certs.d/docker.io/hosts.toml\"")
    error_message = "the AL2023 user data must write docker.io's hosts.toml: ${output.al2023_user_data}"
  }
}

run "existing_bucket_and_role" {
  variables {
    create_bucket = false
    bucket_name   = "shared-cache"
    prefix        = "pullthrough"
    role_arn      = "arn:aws:iam::123456789012:role/platform/pullthrough"
  }

  assert {
    condition = (
      length(aws_s3_bucket.this) + length(aws_s3_bucket_policy.this) + length(aws_s3_bucket_public_access_block.this)
      + length(aws_s3_bucket_server_side_encryption_configuration.this) + length(aws_s3_bucket_lifecycle_configuration.this)
      + length(aws_s3_bucket_ownership_controls.this)
    ) == 0
    error_message = "an existing bucket must be left alone"
  }
  assert {
    condition     = local.environment.PULLTHROUGH_STORE == "s3://shared-cache/pullthrough" && output.bucket_name == "shared-cache" && output.bucket_arn == "arn:aws:s3:::shared-cache"
    error_message = "the function must store in the existing bucket under the prefix"
  }
  assert {
    condition     = data.aws_iam_policy_document.function.statement[0].resources == toset(["arn:aws:s3:::shared-cache/pullthrough/*"])
    error_message = "the policy must still be limited to the prefix of the existing bucket"
  }
  assert {
    condition     = length(aws_iam_role.this) == 0 && length(aws_iam_role_policy.this) == 0
    error_message = "an existing role must not get a second role or an inline policy"
  }
  assert {
    condition     = aws_lambda_function.this.role == "arn:aws:iam::123456789012:role/platform/pullthrough" && output.role_arn == "arn:aws:iam::123456789012:role/platform/pullthrough"
    error_message = "the function must run with the given role"
  }
  assert {
    condition     = output.role_policy_json != ""
    error_message = "role_policy_json must give the policy to attach to the existing role"
  }
}

run "released_package_publish_and_kms" {
  variables {
    package_path                       = null
    package_s3_bucket                  = "releases"
    package_s3_key                     = "pullthrough/pullthrough-1.0.0-arm64.zip"
    package_s3_object_version          = "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"
    publish                            = true
    log_kms_key_arn                    = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    create_upstream_credentials_secret = true
    upstream_credentials_kms_key_arn   = "arn:aws:kms:us-east-1:123456789012:key/66666666-7777-8888-9999-000000000000"
    reserved_concurrent_executions     = 50
    timeout                            = 600
    fill_timeout                       = "9m"
    alarm_thresholds                   = { errors = 1, duration_percent = 50 }
  }

  assert {
    condition = (
      aws_lambda_function.this.filename == null
      && aws_lambda_function.this.s3_bucket == "releases" && aws_lambda_function.this.s3_key == "pullthrough/pullthrough-1.0.0-arm64.zip"
      && aws_lambda_function.this.s3_object_version == "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"
    )
    error_message = "a released zip is deployed from S3, with no local file"
  }
  assert {
    condition     = aws_lambda_function.this.publish && aws_lambda_alias.this[0].name == "live" && aws_lambda_alias.this[0].function_version == "7"
    error_message = "publish must create the alias at the newest version"
  }
  assert {
    condition     = aws_lambda_function_url.this.qualifier == "live" && output.alias_arn == "arn:aws:lambda:us-east-1:123456789012:function:pullthrough:live" && output.function_version == "7"
    error_message = "the function URL must serve the alias, so that moving the alias rolls back"
  }
  assert {
    condition     = aws_cloudwatch_log_group.this.kms_key_id == "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    error_message = "the log group must be encrypted with log_kms_key_arn"
  }
  assert {
    condition     = aws_secretsmanager_secret.upstream_credentials[0].kms_key_id == "arn:aws:kms:us-east-1:123456789012:key/66666666-7777-8888-9999-000000000000"
    error_message = "the created secret must be encrypted with upstream_credentials_kms_key_arn"
  }
  assert {
    condition = (
      [for s in data.aws_iam_policy_document.function.statement : s.sid] == ["CacheObjects", "ReleaseFillLeases", "CacheMissesAreNotFound", "Logs", "BackgroundFills", "UpstreamCredentials", "UpstreamCredentialsKey"]
      && data.aws_iam_policy_document.function.statement[6].actions == toset(["kms:Decrypt"])
      && data.aws_iam_policy_document.function.statement[6].resources == toset(["arn:aws:kms:us-east-1:123456789012:key/66666666-7777-8888-9999-000000000000"])
    )
    error_message = "reading a secret under a customer key needs kms:Decrypt on that key, and only that"
  }
  assert {
    condition = (
      aws_cloudwatch_metric_alarm.function["concurrency"].threshold == 40
      && aws_cloudwatch_metric_alarm.function["errors"].threshold == 1
      && aws_cloudwatch_metric_alarm.function["duration"].threshold == 300000
    )
    error_message = "concurrency must alarm at 80% of the reserved 50; thresholds must follow alarm_thresholds and timeout"
  }
}

run "function_alarms_off" {
  command = plan
  variables {
    create_alarms = false
  }

  assert {
    condition     = length(aws_cloudwatch_metric_alarm.function) == 0 && output.function_alarm_arns == {}
    error_message = "no function alarms when create_alarms is false"
  }
}

run "rejects_existing_bucket_without_name" {
  command = plan
  variables {
    create_bucket = false
  }
  expect_failures = [var.bucket_name]
}

run "rejects_local_and_released_package" {
  command = plan
  variables {
    package_s3_bucket = "releases"
    package_s3_key    = "pullthrough-1.0.0-arm64.zip"
  }
  expect_failures = [var.package_path]
}

run "rejects_no_package" {
  command = plan
  variables {
    package_path = null
  }
  expect_failures = [var.package_path]
}

run "rejects_released_package_without_key" {
  command = plan
  variables {
    package_path      = null
    package_s3_bucket = "releases"
  }
  expect_failures = [var.package_s3_bucket]
}

run "rejects_numeric_alias" {
  command = plan
  variables {
    alias_name = "1"
  }
  expect_failures = [var.alias_name]
}

run "rejects_role_arn_that_is_not_a_role" {
  command = plan
  variables {
    role_arn = "arn:aws:iam::123456789012:policy/pullthrough"
  }
  expect_failures = [var.role_arn]
}

run "rejects_duration_alarm_at_zero" {
  command = plan
  variables {
    alarm_thresholds = { duration_percent = 0 }
  }
  expect_failures = [var.alarm_thresholds]
}

run "prefix_expiry_kms_created_secret" {
  variables {
    prefix                             = "mirrors/docker-hub"
    cache_expiration_days              = 30
    kms_key_arn                        = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    create_upstream_credentials_secret = true
    reserved_concurrent_executions     = 10
    log_level                          = "debug"
    extra_environment                  = { PULLTHROUGH_FILL_LEASE_TTL = "45s" }
  }

  assert {
    condition     = local.environment.PULLTHROUGH_STORE == "s3://cache-bucket/mirrors/docker-hub"
    error_message = "PULLTHROUGH_STORE must carry the prefix"
  }
  assert {
    condition     = local.environment.PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET == "arn:aws:secretsmanager:us-east-1:123456789012:secret:created-AbCdEf"
    error_message = "the function must be pointed at the created secret"
  }
  assert {
    condition     = local.environment.PULLTHROUGH_FILL_LEASE_TTL == "45s" && local.environment.PULLTHROUGH_LOG_LEVEL == "debug"
    error_message = "extra_environment must be merged in"
  }
  assert {
    condition     = data.aws_iam_policy_document.function.statement[0].resources == toset(["arn:aws:s3:::cache-bucket/mirrors/docker-hub/*"])
    error_message = "object actions must be limited to the prefix"
  }
  assert {
    condition     = toset(one(data.aws_iam_policy_document.function.statement[2].condition).values) == toset(["mirrors/docker-hub/*"])
    error_message = "ListBucket must be limited to the prefix"
  }
  assert {
    condition     = [for s in data.aws_iam_policy_document.function.statement : s.sid] == ["CacheObjects", "ReleaseFillLeases", "CacheMissesAreNotFound", "Logs", "BackgroundFills", "CacheEncryptionKey", "UpstreamCredentials"]
    error_message = "KMS and secret statements must be added"
  }
  assert {
    condition     = [for r in aws_s3_bucket_lifecycle_configuration.this[0].rule : r.filter[0].prefix] == ["mirrors/docker-hub/", "mirrors/docker-hub/"]
    error_message = "both lifecycle rules must be limited to the prefix"
  }
  assert {
    condition     = aws_s3_bucket_lifecycle_configuration.this[0].rule[1].expiration[0].days == 30
    error_message = "expiry rule must use cache_expiration_days"
  }
  assert {
    condition = (
      one(one(aws_s3_bucket_server_side_encryption_configuration.this[0].rule).apply_server_side_encryption_by_default).sse_algorithm == "aws:kms"
      && one(aws_s3_bucket_server_side_encryption_configuration.this[0].rule).bucket_key_enabled
    )
    error_message = "a KMS key must switch to SSE-KMS with a bucket key"
  }
  assert {
    condition     = aws_lambda_function.this.reserved_concurrent_executions == 10 && aws_lambda_function.this.logging_config[0].application_log_level == "DEBUG"
    error_message = "concurrency and log level must be passed through"
  }
}

run "existing_secret" {
  variables {
    upstream_credentials_secret_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:hub-XyZ123"
  }

  assert {
    condition     = length(aws_secretsmanager_secret.upstream_credentials) == 0
    error_message = "an existing secret must not create another"
  }
  assert {
    condition     = local.environment.PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET == "arn:aws:secretsmanager:us-east-1:123456789012:secret:hub-XyZ123"
    error_message = "the function must be pointed at the given secret"
  }
  assert {
    condition     = data.aws_iam_policy_document.function.statement[5].resources == toset(["arn:aws:secretsmanager:us-east-1:123456789012:secret:hub-XyZ123"])
    error_message = "the role may read the given secret only"
  }
}

run "other_upstream_hosts_toml" {
  variables {
    upstream = "https://ghcr.example.test"
  }

  assert {
    condition     = startswith(output.containerd_hosts_toml, "server = \"https://ghcr.example.test\"\n")
    error_message = "hosts.toml must fall back to the configured upstream"
  }
}

run "several_upstreams_and_tuning" {
  variables {
    upstreams         = ["docker.io", "ghcr.io", "registry.example:5000=https://r.example:5000/"]
    default_upstream  = "ghcr.io"
    large_blob_policy = "redirect-upstream"
    large_blob_size   = "512MiB"
    fill_timeout      = "9m30s"
    fill_wait         = "90s"
    timeout           = 600
    client_cidrs      = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]
    alarm_actions     = ["arn:aws:sns:us-east-1:123456789012:oncall"]
  }

  assert {
    condition = local.environment == {
      PULLTHROUGH_STORE             = "s3://cache-bucket"
      PULLTHROUGH_UPSTREAMS         = "docker.io,ghcr.io,registry.example:5000=https://r.example:5000/"
      PULLTHROUGH_DEFAULT_UPSTREAM  = "ghcr.io"
      PULLTHROUGH_MANIFEST_TTL      = "5m"
      PULLTHROUGH_PRESIGN_TTL       = "15m"
      PULLTHROUGH_LOG_LEVEL         = "info"
      PULLTHROUGH_LARGE_BLOB_POLICY = "redirect-upstream"
      PULLTHROUGH_LARGE_BLOB_SIZE   = "512MiB"
      PULLTHROUGH_FILL_TIMEOUT      = "9m30s"
      PULLTHROUGH_FILL_WAIT         = "90s"
      PULLTHROUGH_CLIENT_CIDRS      = "10.0.0.0/8,2001:db8::/32,192.0.2.7"
      PULLTHROUGH_ALLOW_OPEN        = "true"
    }
    error_message = "unexpected environment (PULLTHROUGH_UPSTREAM must give way to PULLTHROUGH_UPSTREAMS): ${jsonencode(local.environment)}"
  }
  assert {
    condition     = keys(aws_cloudwatch_metric_alarm.upstream_throttled) == ["docker.io", "ghcr.io", "registry.example:5000"]
    error_message = "every upstream host must get an alarm"
  }
  assert {
    condition = alltrue([
      for a in aws_cloudwatch_metric_alarm.upstream_throttled :
      a.alarm_actions == toset(["arn:aws:sns:us-east-1:123456789012:oncall"]) && a.ok_actions == toset(["arn:aws:sns:us-east-1:123456789012:oncall"])
    ])
    error_message = "alarm_actions must be notified on alarm and on recovery"
  }
  assert {
    condition = length(jsondecode(aws_cloudwatch_dashboard.this[0].dashboard_body).widgets[0].properties.metrics) == 9 && contains(
      [for m in jsondecode(aws_cloudwatch_dashboard.this[0].dashboard_body).widgets[0].properties.metrics : m[5]], "registry.example:5000"
    )
    error_message = "hits, misses and stale serves must be charted for each of the three hosts"
  }
  assert {
    condition     = startswith(output.containerd_hosts_toml, "server = \"https://ghcr.io\"\n")
    error_message = "hosts.toml must fall back to the default upstream's URL"
  }
  assert {
    condition     = output.doctor_command == "pullthrough doctor --image docker.io/library/alpine:latest --ns docker.io --ns ghcr.io --ns registry.example:5000 https://abc123.lambda-url.us-east-1.on.aws"
    error_message = "doctor_command must name Docker Hub's image explicitly when another upstream is the default, and check every upstream's routing: ${output.doctor_command}"
  }
  assert {
    condition     = aws_lambda_function.this.description == "Pull-through cache for docker.io, ghcr.io, registry.example:5000"
    error_message = "the description must list the registries: ${aws_lambda_function.this.description}"
  }
}

run "monitoring_off_and_binary_defaults" {
  variables {
    create_dashboard = false
    create_alarms    = false
    fill_timeout     = null
  }

  assert {
    condition     = length(aws_cloudwatch_dashboard.this) == 0 && length(aws_cloudwatch_metric_alarm.upstream_throttled) == 0
    error_message = "no dashboard or alarms when switched off"
  }
  assert {
    condition     = output.dashboard_name == null && output.dashboard_url == null && output.alarm_arns == {}
    error_message = "monitoring outputs must be empty when switched off"
  }
  assert {
    condition     = !contains(keys(local.environment), "PULLTHROUGH_FILL_TIMEOUT")
    error_message = "a null fill_timeout must leave the binary's default"
  }
}

run "default_upstream_with_single_upstream" {
  command = plan
  variables {
    default_upstream = "docker.io"
  }

  assert {
    condition     = local.environment.PULLTHROUGH_DEFAULT_UPSTREAM == "docker.io"
    error_message = "docker.io names the default upstream registry-1.docker.io"
  }
}

# Validations: each run must be rejected by the named variable.

run "rejects_both_secret_settings" {
  command = plan
  variables {
    upstream_credentials_secret_arn    = "arn:aws:secretsmanager:us-east-1:123456789012:secret:hub-XyZ123"
    create_upstream_credentials_secret = true
  }
  expect_failures = [var.upstream_credentials_secret_arn]
}

run "rejects_managed_names_in_extra_environment" {
  command = plan
  variables {
    extra_environment = { PULLTHROUGH_STORE = "s3://elsewhere" }
  }
  expect_failures = [var.extra_environment]
}

run "rejects_reserved_names_in_extra_environment" {
  command = plan
  variables {
    extra_environment = { AWS_REGION = "eu-west-1" }
  }
  expect_failures = [var.extra_environment]
}

run "rejects_credentials_in_the_upstream_url" {
  command = plan
  variables {
    upstream = "https://robot:hunter2@registry.example"
  }
  expect_failures = [var.upstream]
}

run "rejects_unknown_architecture" {
  command = plan
  variables {
    architecture = "arm"
  }
  expect_failures = [var.architecture]
}

run "rejects_prefix_with_slashes_at_the_ends" {
  command = plan
  variables {
    prefix = "/cache/"
  }
  expect_failures = [var.prefix]
}

run "rejects_prefix_with_wildcards" {
  command = plan
  variables {
    prefix = "cache*"
  }
  expect_failures = [var.prefix]
}

run "rejects_upstream_with_path" {
  command = plan
  variables {
    upstream = "https://registry-1.docker.io/v2/"
  }
  expect_failures = [var.upstream]
}

run "rejects_non_duration_ttl" {
  command = plan
  variables {
    manifest_ttl = "5 minutes"
  }
  expect_failures = [var.manifest_ttl]
}

run "rejects_timeout_over_15_minutes" {
  command = plan
  variables {
    timeout = 901
  }
  expect_failures = [var.timeout]
}

run "rejects_unsupported_log_retention" {
  command = plan
  variables {
    log_retention_days = 2
  }
  expect_failures = [var.log_retention_days]
}

run "rejects_kms_alias" {
  command = plan
  variables {
    kms_key_arn = "arn:aws:kms:us-east-1:123456789012:alias/cache"
  }
  expect_failures = [var.kms_key_arn]
}

run "rejects_upper_case_name" {
  command = plan
  variables {
    name = "PullThrough"
  }
  expect_failures = [var.name]
}

run "rejects_upstreams_with_path" {
  command = plan
  variables {
    upstreams = ["ghcr.io=https://ghcr.io/v2/"]
  }
  expect_failures = [var.upstreams]
}

run "rejects_upstreams_with_scheme_as_host" {
  command = plan
  variables {
    upstreams = ["https://ghcr.io"]
  }
  expect_failures = [var.upstreams]
}

run "rejects_repeated_upstream_host" {
  command = plan
  variables {
    upstreams = ["ghcr.io", "ghcr.io=https://mirror.example"]
  }
  expect_failures = [var.upstreams]
}

run "rejects_default_upstream_not_served" {
  command = plan
  variables {
    upstreams        = ["docker.io", "ghcr.io"]
    default_upstream = "quay.io"
  }
  expect_failures = [var.default_upstream]
}

run "rejects_default_upstream_other_than_the_single_upstream" {
  command = plan
  variables {
    default_upstream = "ghcr.io"
  }
  expect_failures = [var.default_upstream]
}

run "rejects_unknown_large_blob_policy" {
  command = plan
  variables {
    large_blob_policy = "redirect"
  }
  expect_failures = [var.large_blob_policy]
}

run "rejects_decimal_large_blob_size" {
  command = plan
  variables {
    large_blob_size = "1GB"
  }
  expect_failures = [var.large_blob_size]
}

run "rejects_non_duration_fill_timeout" {
  command = plan
  variables {
    fill_timeout = "14"
  }
  expect_failures = [var.fill_timeout]
}

run "rejects_fill_timeout_not_below_timeout" {
  command = plan
  variables {
    timeout = 600
  }
  # The default 14m is longer than 600 s.
  expect_failures = [var.fill_timeout]
}

run "rejects_fill_timeout_equal_to_timeout" {
  command = plan
  variables {
    fill_timeout = "15m"
  }
  expect_failures = [var.fill_timeout]
}

run "rejects_fill_wait_not_below_timeout" {
  command = plan
  variables {
    timeout      = 120
    fill_timeout = "100s"
    fill_wait    = "2m"
  }
  expect_failures = [var.fill_wait]
}

# The binary refuses PULLTHROUGH_FILL_WAIT=0s (proxy.Config.Validate); so
# does the module, at plan time instead of at the function's first start.
run "rejects_zero_fill_wait" {
  command = plan
  variables {
    fill_wait = "0s"
  }
  expect_failures = [var.fill_wait]
}

run "rejects_bad_client_cidr" {
  command = plan
  variables {
    client_cidrs = ["10.0.0.0/33"]
  }
  expect_failures = [var.client_cidrs]
}

run "rejects_new_managed_names_in_extra_environment" {
  command = plan
  variables {
    extra_environment = { PULLTHROUGH_CLIENT_CIDRS = "0.0.0.0/0" }
  }
  expect_failures = [var.extra_environment]
}

run "rejects_client_tokens_in_extra_environment" {
  command = plan
  variables {
    extra_environment = { PULLTHROUGH_CLIENT_TOKENS = "s3cr3t" }
  }
  expect_failures = [var.extra_environment]
}

run "rejects_upstream_password_in_extra_environment" {
  command = plan
  variables {
    extra_environment = { PULLTHROUGH_UPSTREAM_GHCR_IO_PASSWORD = "s3cr3t" }
  }
  expect_failures = [var.extra_environment]
}

run "rejects_alarm_action_that_is_not_an_arn" {
  command = plan
  variables {
    alarm_actions = ["oncall@example.com"]
  }
  expect_failures = [var.alarm_actions]
}

run "sweep_off_by_default" {
  assert {
    condition     = length(aws_scheduler_schedule.sweep) == 0 && length(aws_iam_role.sweep) == 0 && !contains(keys(local.environment), "PULLTHROUGH_RETENTION")
    error_message = "without retention_days there is no sweep schedule, role or PULLTHROUGH_RETENTION"
  }
  assert {
    condition     = !contains([for s in data.aws_iam_policy_document.function.statement : s.sid], "SweepUnusedContent")
    error_message = "without the sweep the role must not delete cached content"
  }
}

run "sweep_enabled" {
  variables {
    retention_days = 30
    prefix         = "mirrors/docker-hub"
  }
  assert {
    condition     = local.environment["PULLTHROUGH_RETENTION"] == "30d"
    error_message = "retention_days must reach the function as PULLTHROUGH_RETENTION"
  }
  assert {
    condition = (
      [for s in data.aws_iam_policy_document.function.statement : s.sid] == ["CacheObjects", "ReleaseFillLeases", "CacheMissesAreNotFound", "Logs", "BackgroundFills", "SweepUnusedContent"]
      && data.aws_iam_policy_document.function.statement[5].actions == toset(["s3:DeleteObject"])
      && data.aws_iam_policy_document.function.statement[5].resources == toset([for p in ["tags", "manifests", "blobs", "links", "referrers"] : "arn:aws:s3:::cache-bucket/mirrors/docker-hub/${p}/*"])
    )
    error_message = "the sweep may delete cached records and blobs under the prefix, nothing else"
  }
  assert {
    condition     = aws_scheduler_schedule.sweep[0].schedule_expression == "rate(1 day)" && jsondecode(aws_scheduler_schedule.sweep[0].target[0].input) == { sweep = {} }
    error_message = "a daily schedule must send the sweep event"
  }
  assert {
    condition     = length(aws_s3_bucket_lifecycle_configuration.this[0].rule) == 1
    error_message = "the creation-date expiry stays off unless cache_expiration_days is set"
  }
}

run "rejects_retention_of_a_day" {
  command = plan
  variables {
    retention_days = 1
  }
  expect_failures = [var.retention_days]
}

run "refuses_open_mirror_by_default" {
  command = plan
  variables {
    allow_public_access = false
  }
  expect_failures = [var.allow_public_access]
}

run "allows_public_access_when_asked" {
  command = plan
  variables {
    allow_public_access = true
  }
  assert {
    condition     = aws_lambda_function_url.this.authorization_type == "NONE" && !contains(keys(local.environment), "PULLTHROUGH_CLIENT_CIDRS")
    error_message = "allow_public_access must plan the open mirror it acknowledges"
  }
  assert {
    condition     = local.environment["PULLTHROUGH_ALLOW_OPEN"] == "true"
    error_message = "allow_public_access must tell the function that it may start open (PULLTHROUGH_ALLOW_OPEN)"
  }
}

run "allows_open_url_with_client_cidrs" {
  command = plan
  variables {
    allow_public_access = false
    client_cidrs        = ["203.0.113.10/32"]
  }
  assert {
    condition     = local.environment["PULLTHROUGH_CLIENT_CIDRS"] == "203.0.113.10/32"
    error_message = "client_cidrs must be enough to plan without allow_public_access"
  }
  assert {
    condition     = !contains(keys(local.environment), "PULLTHROUGH_ALLOW_OPEN")
    error_message = "without allow_public_access the function must not be told it may start open"
  }
}

run "allows_open_url_with_created_credentials_secret" {
  command = plan
  variables {
    allow_public_access                = false
    create_upstream_credentials_secret = true
  }
  assert {
    condition     = length(aws_secretsmanager_secret.upstream_credentials) == 1
    error_message = "a created credentials secret (for client tokens/users) must be enough to plan without allow_public_access"
  }
}

run "allows_open_url_with_existing_credentials_secret" {
  command = plan
  variables {
    allow_public_access             = false
    upstream_credentials_secret_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:existing-AbCdEf"
  }
  assert {
    condition     = local.environment["PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET"] == "arn:aws:secretsmanager:us-east-1:123456789012:secret:existing-AbCdEf"
    error_message = "an existing credentials secret (for client tokens/users) must be enough to plan without allow_public_access"
  }
}

run "unreserved_concurrency_alarms_at_account_limit" {
  command = plan
  variables {
    reserved_concurrent_executions = null
  }
  assert {
    condition     = aws_lambda_function.this.reserved_concurrent_executions == -1 && aws_cloudwatch_metric_alarm.function["concurrency"].threshold == 800
    error_message = "null must leave concurrency unreserved, alarming at 800 (80% of the default account limit)"
  }
}

run "max_blob_size_passed" {
  command = plan
  variables {
    max_blob_size = "2GiB"
  }
  assert {
    condition     = local.environment["PULLTHROUGH_MAX_BLOB_SIZE"] == "2GiB"
    error_message = "max_blob_size must reach the function as PULLTHROUGH_MAX_BLOB_SIZE"
  }
}

run "rejects_bad_max_blob_size" {
  command = plan
  variables {
    max_blob_size = "10GB"
  }
  expect_failures = [var.max_blob_size]
}

run "concurrency_quota_checked" {
  command = plan
  assert {
    condition = (
      one(data.aws_servicequotas_service_quota.lambda_concurrency[*].service_code) == "lambda"
      && one(data.aws_servicequotas_service_quota.lambda_concurrency[*].quota_code) == "L-B99A9384"
      && local.concurrency_quota == 1000
    )
    error_message = "the default reservation of 50 must be checked against the account's Lambda concurrency quota (L-B99A9384)"
  }
}

run "rejects_reservation_over_new_account_quota" {
  command = plan
  override_data {
    target = data.aws_servicequotas_service_quota.lambda_concurrency[0]
    values = {
      value = 10
    }
  }
  expect_failures = [aws_lambda_function.this]
}

run "rejects_reservation_leaving_under_100_unreserved" {
  command = plan
  variables {
    reserved_concurrent_executions = 401
  }
  override_data {
    target = data.aws_servicequotas_service_quota.lambda_concurrency[0]
    values = {
      value = 500
    }
  }
  expect_failures = [aws_lambda_function.this]
}

run "reservation_that_leaves_100_unreserved" {
  command = plan
  variables {
    reserved_concurrent_executions = 400
  }
  override_data {
    target = data.aws_servicequotas_service_quota.lambda_concurrency[0]
    values = {
      value = 500
    }
  }
  assert {
    condition     = aws_lambda_function.this.reserved_concurrent_executions == 400
    error_message = "400 of a quota of 500 leaves the 100 AWS keeps unreserved and must plan"
  }
}

run "unreserved_needs_no_quota" {
  command = plan
  variables {
    reserved_concurrent_executions = null
  }
  assert {
    condition     = length(data.aws_servicequotas_service_quota.lambda_concurrency) == 0
    error_message = "an unreserved function takes nothing from the quota: no look-up"
  }
}

run "quota_check_off" {
  command = plan
  variables {
    check_concurrency_quota = false
  }
  assert {
    condition     = length(data.aws_servicequotas_service_quota.lambda_concurrency) == 0 && aws_lambda_function.this.reserved_concurrent_executions == 50
    error_message = "check_concurrency_quota = false must skip the look-up and keep the reservation"
  }
}
