# The smallest useful deployment: a Docker Hub mirror with default settings
# (and other registries, if `upstreams` lists them).
#
# The endpoint and skip_* variables exist so the same configuration can be
# applied to local stand-ins for AWS (see infra/test/run.sh and localstack/);
# their defaults talk to real AWS.

provider "aws" {
  region = var.region

  s3_use_path_style           = var.s3_use_path_style
  skip_credentials_validation = var.skip_credentials_validation
  skip_requesting_account_id  = var.skip_requesting_account_id
  skip_metadata_api_check     = var.skip_metadata_api_check

  endpoints {
    cloudwatch     = lookup(var.aws_endpoints, "cloudwatch", null)
    iam            = lookup(var.aws_endpoints, "iam", null)
    kms            = lookup(var.aws_endpoints, "kms", null)
    lambda         = lookup(var.aws_endpoints, "lambda", null)
    logs           = lookup(var.aws_endpoints, "logs", null)
    s3             = lookup(var.aws_endpoints, "s3", null)
    secretsmanager = lookup(var.aws_endpoints, "secretsmanager", null)
    servicequotas  = lookup(var.aws_endpoints, "servicequotas", null)
    sts            = lookup(var.aws_endpoints, "sts", null)
  }
}

module "pullthrough" {
  source = "../.."

  name          = var.name
  architecture  = var.architecture
  force_destroy = var.force_destroy
  upstreams     = var.upstreams
  publish       = var.publish

  # Who may use the mirror: the module refuses to plan one open to the
  # whole internet unless allow_public_access says so.
  client_cidrs        = var.client_cidrs
  allow_public_access = var.allow_public_access

  # The plan fails when the reservation does not fit the account's Lambda
  # concurrency quota (new accounts: 10 or 50), saying what to set.
  reserved_concurrent_executions = var.reserved_concurrent_executions
  check_concurrency_quota        = var.check_concurrency_quota

  extra_environment = var.extra_environment

  # A released zip in S3, or else a local one: `make package` writes it at
  # the repository root, four levels up.
  package_s3_bucket = var.package_s3_bucket
  package_s3_key    = var.package_s3_key
  package_path = var.package_s3_bucket != null ? null : coalesce(
    var.package_path, "${path.module}/../../../../build/lambda/pullthrough-${var.architecture}.zip"
  )
}
