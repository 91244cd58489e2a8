data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

# Addresses before role_arn existed; keeps upgrades from replacing the role
# in two steps (the name change below replaces it once).
moved {
  from = aws_iam_role.this
  to   = aws_iam_role.this[0]
}

moved {
  from = aws_iam_role_policy.this
  to   = aws_iam_role_policy.this[0]
}

resource "aws_iam_role" "this" {
  count = var.role_arn == null ? 1 : 0

  name                 = local.role_name
  description          = "Runs the ${var.name} registry pull-through cache."
  assume_role_policy   = data.aws_iam_policy_document.assume.json
  permissions_boundary = var.role_permissions_boundary_arn

  tags = var.tags
}

# Every action here is one the function calls; nothing is granted "just in case".
data "aws_iam_policy_document" "function" {
  statement {
    sid = "CacheObjects"
    actions = [
      # GetObject, HeadObject, and the presigned GETs clients are redirected to
      # (conditional deletes on an ETag need it too).
      "s3:GetObject",
      # PutObject (conditional on If-None-Match or If-Match for fill leases)
      # and the multipart calls CreateMultipartUpload, UploadPart,
      # CompleteMultipartUpload.
      "s3:PutObject",
      # Clean-up of a fill that failed or whose digest did not match.
      "s3:AbortMultipartUpload",
    ]
    resources = ["${local.bucket_arn}/${local.key_prefix}*"]
  }

  # The only objects the function ever deletes are its own fill leases
  # (released with If-Match on the holder's ETag): cached blobs and
  # manifests cannot be deleted with this role.
  statement {
    sid       = "ReleaseFillLeases"
    actions   = ["s3:DeleteObject"]
    resources = ["${local.bucket_arn}/${local.key_prefix}leases/*"]
  }

  # Without s3:ListBucket S3 answers HeadObject on a missing key with 403
  # instead of 404, and a cache miss would look like a permission failure.
  # Only the sweep lists (sweep.tf); the condition keeps listing to its own
  # prefix.
  statement {
    sid       = "CacheMissesAreNotFound"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]

    dynamic "condition" {
      for_each = var.prefix == "" ? [] : [local.key_prefix]

      content {
        test     = "StringLike"
        variable = "s3:prefix"
        values   = ["${condition.value}*"]
      }
    }
  }

  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:*"]
  }

  # A fill that may outlast its request runs in an asynchronous invocation
  # of the function itself (Invoke with InvocationType Event, FunctionName
  # from AWS_LAMBDA_FUNCTION_NAME), which is bounded by the function's own
  # timeout rather than by the client's patience.
  statement {
    sid       = "BackgroundFills"
    actions   = ["lambda:InvokeFunction"]
    resources = [local.function_arn]
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]

    content {
      sid = "CacheEncryptionKey"
      # GenerateDataKey for writes, Decrypt for reads and for completing
      # multipart uploads.
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = local.upstream_credentials_secret_arn == null ? [] : [local.upstream_credentials_secret_arn]

    content {
      sid       = "UpstreamCredentials"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [statement.value]
    }
  }

  # Only with the sweep enabled (retention_days, sweep.tf) may the function
  # delete cached content: tag and manifest records, blobs, and the links
  # and referrers records of what it deletes. Leases stay covered by
  # ReleaseFillLeases alone.
  dynamic "statement" {
    for_each = local.sweep_enabled ? [local.key_prefix] : []

    content {
      sid     = "SweepUnusedContent"
      actions = ["s3:DeleteObject"]
      resources = [for p in ["tags", "manifests", "blobs", "links", "referrers"] :
      "${local.bucket_arn}/${statement.value}${p}/*"]
    }
  }

  # Secrets Manager decrypts a secret under a customer managed key with the
  # caller's permissions: GetSecretValue also needs kms:Decrypt on the key.
  dynamic "statement" {
    for_each = var.upstream_credentials_kms_key_arn == null ? [] : [var.upstream_credentials_kms_key_arn]

    content {
      sid       = "UpstreamCredentialsKey"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "this" {
  count = var.role_arn == null ? 1 : 0

  name   = local.role_name
  role   = aws_iam_role.this[0].id
  policy = data.aws_iam_policy_document.function.json
}

# Only the container exists in Terraform; its value is set out of band (see
# README) so registry credentials never enter the state file.
resource "aws_secretsmanager_secret" "upstream_credentials" {
  count = var.create_upstream_credentials_secret ? 1 : 0

  name_prefix = "${var.name}-upstream-credentials-"
  kms_key_id  = var.upstream_credentials_kms_key_arn
  description = "Upstream registry credentials for the ${var.name} pull-through cache. Value set outside Terraform."

  tags = var.tags
}
