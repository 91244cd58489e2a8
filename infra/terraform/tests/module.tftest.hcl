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
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }
}

variables {
  package_path = "tests/empty.zip"
}

run "defaults" {
  assert {
    condition = local.environment == {
      PULLTHROUGH_STORE        = "s3://cache-bucket"
      PULLTHROUGH_UPSTREAM     = "https://registry-1.docker.io"
      PULLTHROUGH_MANIFEST_TTL = "5m"
      PULLTHROUGH_PRESIGN_TTL  = "15m"
      PULLTHROUGH_LOG_LEVEL    = "info"
    }
    error_message = "unexpected default environment: ${jsonencode(local.environment)}"
  }
  assert {
    condition     = [for s in data.aws_iam_policy_document.function.statement : s.sid] == ["CacheObjects", "CacheMissesAreNotFound", "Logs"]
    error_message = "default role policy should grant cache objects, ListBucket and logs only"
  }
  assert {
    condition     = length(data.aws_iam_policy_document.function.statement[1].condition) == 0
    error_message = "without a prefix, ListBucket needs no s3:prefix condition"
  }
  assert {
    condition     = data.aws_iam_policy_document.function.statement[0].resources == toset(["arn:aws:s3:::cache-bucket/*"])
    error_message = "object actions must cover the bucket's objects"
  }
  assert {
    condition     = length(aws_s3_bucket_lifecycle_configuration.this.rule) == 1
    error_message = "only the abort-multipart rule is on by default"
  }
  assert {
    condition     = aws_lambda_function.this.reserved_concurrent_executions == -1
    error_message = "concurrency must be unreserved by default"
  }
  assert {
    condition     = aws_lambda_function.this.logging_config[0].application_log_level == "INFO"
    error_message = "Lambda's log filter must follow log_level"
  }
  assert {
    condition     = one(one(aws_s3_bucket_server_side_encryption_configuration.this.rule).apply_server_side_encryption_by_default).sse_algorithm == "AES256"
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
    condition     = length(aws_secretsmanager_secret.upstream_credentials) == 0 && output.upstream_credentials_secret_arn == null
    error_message = "no secret unless asked for"
  }
}

run "prefix_expiry_kms_created_secret" {
  variables {
    prefix                             = "mirrors/docker-hub"
    cache_expiration_days              = 30
    kms_key_arn                        = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    create_upstream_credentials_secret = true
    reserved_concurrent_executions     = 10
    log_level                          = "debug"
    extra_environment                  = { PULLTHROUGH_FILL_TIMEOUT = "14m" }
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
    condition     = local.environment.PULLTHROUGH_FILL_TIMEOUT == "14m" && local.environment.PULLTHROUGH_LOG_LEVEL == "debug"
    error_message = "extra_environment must be merged in"
  }
  assert {
    condition     = data.aws_iam_policy_document.function.statement[0].resources == toset(["arn:aws:s3:::cache-bucket/mirrors/docker-hub/*"])
    error_message = "object actions must be limited to the prefix"
  }
  assert {
    condition     = toset(one(data.aws_iam_policy_document.function.statement[1].condition).values) == toset(["mirrors/docker-hub/*"])
    error_message = "ListBucket must be limited to the prefix"
  }
  assert {
    condition     = [for s in data.aws_iam_policy_document.function.statement : s.sid] == ["CacheObjects", "CacheMissesAreNotFound", "Logs", "CacheEncryptionKey", "UpstreamCredentials"]
    error_message = "KMS and secret statements must be added"
  }
  assert {
    condition     = [for r in aws_s3_bucket_lifecycle_configuration.this.rule : r.filter[0].prefix] == ["mirrors/docker-hub/", "mirrors/docker-hub/"]
    error_message = "both lifecycle rules must be limited to the prefix"
  }
  assert {
    condition     = aws_s3_bucket_lifecycle_configuration.this.rule[1].expiration[0].days == 30
    error_message = "expiry rule must use cache_expiration_days"
  }
  assert {
    condition = (
      one(one(aws_s3_bucket_server_side_encryption_configuration.this.rule).apply_server_side_encryption_by_default).sse_algorithm == "aws:kms"
      && one(aws_s3_bucket_server_side_encryption_configuration.this.rule).bucket_key_enabled
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
    condition     = data.aws_iam_policy_document.function.statement[3].resources == toset(["arn:aws:secretsmanager:us-east-1:123456789012:secret:hub-XyZ123"])
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
