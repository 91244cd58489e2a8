data "aws_partition" "current" {}

data "aws_region" "current" {}

data "aws_caller_identity" "current" {}

locals {
  # The function joins the prefix and a key with "/", so a prefix "cache"
  # owns the keys "cache/...". An empty prefix owns the whole bucket.
  key_prefix = var.prefix == "" ? "" : "${var.prefix}/"

  # The bucket the module created, or the existing one create_bucket = false
  # names (its ARN built from the name, as S3 bucket ARNs carry no region or
  # account).
  bucket_id  = var.create_bucket ? aws_s3_bucket.this[0].id : var.bucket_name
  bucket_arn = var.create_bucket ? aws_s3_bucket.this[0].arn : "arn:${data.aws_partition.current.partition}:s3:::${var.bucket_name}"

  store = var.prefix == "" ? "s3://${local.bucket_id}" : "s3://${local.bucket_id}/${var.prefix}"

  # IAM names are global to the account, so a deployment of the same name in
  # a second region must not collide with the first: the created role and
  # its policy carry the region. IAM allows 64 characters; name is at most
  # 36 and region codes are far shorter than 27.
  role_name = "${var.name}-${data.aws_region.current.region}"
  role_arn  = var.role_arn == null ? aws_iam_role.this[0].arn : var.role_arn

  upstream_credentials_secret_arn = (
    var.create_upstream_credentials_secret
    ? aws_secretsmanager_secret.upstream_credentials[0].arn
    : var.upstream_credentials_secret_arn
  )

  # The registries served, by host, as the binary names them: the hosts in
  # `upstreams`, or else the host of `upstream`, with Docker Hub's
  # registry-1.docker.io called docker.io. The same host is the Upstream
  # dimension of the function's metrics, which the alarms and the dashboard
  # select by.
  upstream_entries = [for u in var.upstreams : regex("^([^=]+)(?:=(.+))?$", u)]
  upstream_hosts = length(var.upstreams) > 0 ? [for e in local.upstream_entries : e[0]] : [
    replace(lower(regex("^https?://([^/]+)", var.upstream)[0]), "/^registry-1\\.docker\\.io$/", "docker.io")
  ]
  upstream_urls = length(var.upstreams) > 0 ? {
    for e in local.upstream_entries : e[0] => trimsuffix(
      e[1] != null ? e[1] : (e[0] == "docker.io" ? "https://registry-1.docker.io" : "https://${e[0]}"), "/"
    )
  } : { (local.upstream_hosts[0]) = var.upstream }
  default_upstream = coalesce(var.default_upstream, local.upstream_hosts[0])

  # The configuration the binary reads; module variables win over
  # extra_environment, which a validation already keeps apart. Optional
  # settings are left out when unset so that the binary's defaults apply.
  environment = merge(
    var.extra_environment,
    {
      PULLTHROUGH_STORE        = local.store
      PULLTHROUGH_MANIFEST_TTL = var.manifest_ttl
      PULLTHROUGH_PRESIGN_TTL  = var.presign_ttl
      PULLTHROUGH_LOG_LEVEL    = var.log_level
    },
    # The binary ignores PULLTHROUGH_UPSTREAM when PULLTHROUGH_UPSTREAMS is
    # set; setting only one keeps the function's configuration unambiguous.
    length(var.upstreams) > 0 ? { PULLTHROUGH_UPSTREAMS = join(",", var.upstreams) } : { PULLTHROUGH_UPSTREAM = var.upstream },
    {
      for k, v in {
        PULLTHROUGH_DEFAULT_UPSTREAM            = var.default_upstream
        PULLTHROUGH_LARGE_BLOB_POLICY           = var.large_blob_policy
        PULLTHROUGH_LARGE_BLOB_SIZE             = var.large_blob_size
        PULLTHROUGH_MAX_BLOB_SIZE               = var.max_blob_size
        PULLTHROUGH_FILL_TIMEOUT                = var.fill_timeout
        PULLTHROUGH_FILL_WAIT                   = var.fill_wait
        PULLTHROUGH_CLIENT_CIDRS                = length(var.client_cidrs) > 0 ? join(",", var.client_cidrs) : null
        PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET = local.upstream_credentials_secret_arn
        PULLTHROUGH_RETENTION                   = var.retention_days == null ? null : "${var.retention_days}d"
        # The module cannot read the secret; the binary can, and refuses to
        # start open (no client credentials, no CIDRs) unless this says so.
        PULLTHROUGH_ALLOW_OPEN = var.allow_public_access ? "true" : null
      } : k => v if v != null
    },
  )

  log_group_name = "/aws/lambda/${var.name}"

  # The function's own ARN, built from its parts: the role's policy must name
  # it, and the function depends on the policy, so the function's arn
  # attribute would make a cycle. Unqualified, as the binary invokes it.
  function_arn = "arn:${data.aws_partition.current.partition}:lambda:${data.aws_region.current.region}:${data.aws_caller_identity.current.account_id}:function:${var.name}"
}
