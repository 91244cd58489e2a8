resource "aws_cloudwatch_log_group" "this" {
  name              = local.log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn

  tags = var.tags
}

resource "aws_lambda_function" "this" {
  function_name = var.name
  # Lambda allows 256 characters.
  description = substr("Pull-through cache for ${join(", ", local.upstream_hosts)}", 0, 256)
  role        = local.role_arn

  runtime       = "provided.al2023"
  handler       = "bootstrap"
  architectures = [var.architecture]

  # A local zip, or a released one in S3 (no Go needed where Terraform
  # runs). For the local zip the hash makes a rebuilt binary a change; a
  # reproducible build (make release) keeps it stable between builds.
  filename          = var.package_path
  source_code_hash  = var.package_path == null ? null : filebase64sha256(var.package_path)
  s3_bucket         = var.package_s3_bucket
  s3_key            = var.package_s3_key
  s3_object_version = var.package_s3_object_version

  # Each change publishes a numbered version that the alias below moves to.
  publish = var.publish

  memory_size = var.memory_size
  timeout     = var.timeout
  # -1 is the provider's "unreserved".
  reserved_concurrent_executions = coalesce(var.reserved_concurrent_executions, -1)

  environment {
    variables = local.environment
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.this.name
    # The binary already filters by PULLTHROUGH_LOG_LEVEL; Lambda's own filter
    # would drop its debug lines (it defaults to INFO for JSON logs) if it
    # were not kept in step.
    application_log_level = upper(var.log_level)
    system_log_level      = "INFO"
  }

  tags = var.tags

  # The role must be able to write logs and reach the bucket before the first
  # invocation, not eventually.
  depends_on = [aws_iam_role_policy.this]

  lifecycle {
    # PutFunctionConcurrency fails at apply time, after the bucket and role
    # exist, when the account would keep fewer than 100 unreserved
    # executions ("Lambda quotas" in the Lambda developer guide); say so at
    # plan time, with the number that fits.
    precondition {
      # HCL evaluates both sides of || and of a conditional: no arithmetic on a null quota.
      condition     = local.concurrency_quota == null || coalesce(var.reserved_concurrent_executions, 0) <= coalesce(local.concurrency_quota, 100) - 100
      error_message = "reserved_concurrent_executions = ${coalesce(var.reserved_concurrent_executions, 0)} does not fit: this account's Lambda concurrency quota in ${data.aws_region.current.region} is ${local.quota_value} (Service Quotas L-B99A9384), and AWS keeps 100 of it unreserved. ${local.quota_value > 100 ? "Set reserved_concurrent_executions to at most ${local.quota_value - 100} (less what other functions in the account reserve)" : "Nothing can be reserved: set reserved_concurrent_executions = null (unreserved, capped only by the account quota)"}, or request an increase of \"Concurrent executions\" in the Service Quotas console and plan again."
    }
  }
}

# The account's regional concurrency quota, read only when something is
# reserved: the applied value if it was ever changed, else AWS's default.
data "aws_servicequotas_service_quota" "lambda_concurrency" {
  count = var.check_concurrency_quota && coalesce(var.reserved_concurrent_executions, 0) > 0 ? 1 : 0

  service_code = "lambda"
  quota_code   = "L-B99A9384"
}

locals {
  concurrency_quota = one(data.aws_servicequotas_service_quota.lambda_concurrency[*].value)
  # For the precondition's message only, which HCL evaluates with any quota.
  quota_value = coalesce(local.concurrency_quota, 0)
}

# With publish, clients reach the alias, so that a bad release is rolled back
# by pointing the alias at the previous version, without Terraform. The
# alias follows each apply; Terraform puts it back at the newest version on
# the next apply unless function_version is changed here too.
resource "aws_lambda_alias" "this" {
  count = var.publish ? 1 : 0

  name             = var.alias_name
  description      = "Version the ${var.name} function URL serves."
  function_name    = aws_lambda_function.this.function_name
  function_version = aws_lambda_function.this.version
}

resource "aws_lambda_function_url" "this" {
  function_name = aws_lambda_function.this.function_name
  # The URL of the alias, not of $LATEST. Background fills still invoke the
  # unqualified function (the binary invokes AWS_LAMBDA_FUNCTION_NAME), which
  # runs $LATEST: after a rollback, fills run the newer code.
  qualifier = var.publish ? aws_lambda_alias.this[0].name : null
  # Docker and containerd cannot sign requests with SigV4; see README for
  # what limits who can use the mirror. With NONE the provider also adds the
  # two resource-policy statements (lambda:InvokeFunctionUrl and
  # lambda:InvokeFunction via function URL) that public URLs need.
  authorization_type = "NONE"
  # Streaming sends headers and bytes while a fill is still running and lifts
  # the response limit from 6 MB to 200 MB. Cache hits are redirects to S3
  # and never flow through the function.
  invoke_mode = "RESPONSE_STREAM"
}

# Background fills are asynchronous invocations of the function itself (see
# the BackgroundFills statement in iam.tf).
resource "aws_lambda_function_event_invoke_config" "this" {
  function_name = aws_lambda_function.this.function_name

  # Lambda's default is two retries of a failed invocation. A fill that failed
  # (upstream down, digest mismatch, timeout) is not worth repeating blindly:
  # the next client request for the blob starts a new one, and a retry of a
  # fill that hit its timeout would only hit it again.
  maximum_retry_attempts = 0

  # An event that waited this long in Lambda's queue (throttled by reserved
  # concurrency) is dropped instead of run (default: 6 hours). Clients gave up
  # on it long before; their retries have queued fresher ones.
  maximum_event_age_in_seconds = 900
}
