locals {
  # The function joins the prefix and a key with "/", so a prefix "cache"
  # owns the keys "cache/...". An empty prefix owns the whole bucket.
  key_prefix = var.prefix == "" ? "" : "${var.prefix}/"

  store = var.prefix == "" ? "s3://${aws_s3_bucket.this.id}" : "s3://${aws_s3_bucket.this.id}/${var.prefix}"

  upstream_credentials_secret_arn = (
    var.create_upstream_credentials_secret
    ? aws_secretsmanager_secret.upstream_credentials[0].arn
    : var.upstream_credentials_secret_arn
  )

  # The configuration the binary reads; module variables win over
  # extra_environment, which a validation already keeps apart.
  environment = merge(
    var.extra_environment,
    {
      PULLTHROUGH_STORE        = local.store
      PULLTHROUGH_UPSTREAM     = var.upstream
      PULLTHROUGH_MANIFEST_TTL = var.manifest_ttl
      PULLTHROUGH_PRESIGN_TTL  = var.presign_ttl
      PULLTHROUGH_LOG_LEVEL    = var.log_level
    },
    local.upstream_credentials_secret_arn == null ? {} : {
      PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET = local.upstream_credentials_secret_arn
    },
  )

  log_group_name = "/aws/lambda/${var.name}"
}
