# Access-aware eviction. With retention_days set, EventBridge Scheduler
# invokes the function once a day with {"sweep":{}}; the function deletes the
# tags, manifests and blobs that no tag or digest pulled within the retention
# uses (README, "Eviction"). Without it nothing here exists and the role may
# not delete cached content at all.

locals {
  sweep_enabled = var.retention_days != null
}

data "aws_iam_policy_document" "sweep_assume" {
  count = local.sweep_enabled ? 1 : 0

  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }

    # Only schedules of this account may use the role (confused deputy).
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "sweep" {
  count = local.sweep_enabled ? 1 : 0

  name                 = "${var.name}-sweep"
  description          = "Lets the daily schedule start the ${var.name} cache sweep."
  assume_role_policy   = data.aws_iam_policy_document.sweep_assume[0].json
  permissions_boundary = var.role_permissions_boundary_arn

  tags = var.tags
}

data "aws_iam_policy_document" "sweep" {
  count = local.sweep_enabled ? 1 : 0

  statement {
    sid       = "StartSweep"
    actions   = ["lambda:InvokeFunction"]
    resources = [local.function_arn]
  }
}

resource "aws_iam_role_policy" "sweep" {
  count = local.sweep_enabled ? 1 : 0

  name   = "${var.name}-sweep"
  role   = aws_iam_role.sweep[0].id
  policy = data.aws_iam_policy_document.sweep[0].json
}

resource "aws_scheduler_schedule" "sweep" {
  count = local.sweep_enabled ? 1 : 0

  name                = "${var.name}-sweep"
  description         = "Deletes ${var.name} cache content unused for ${coalesce(var.retention_days, 0)} days."
  schedule_expression = var.sweep_schedule

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = local.function_arn
    role_arn = aws_iam_role.sweep[0].arn
    # A templated Lambda target: Scheduler calls Invoke with this input
    # (Scheduler user guide, "Using templated targets"). A failed sweep is
    # not retried and waits for the next day: it is idempotent, and a retry
    # would only repeat the listing.
    input = jsonencode({ sweep = {} })

    retry_policy {
      maximum_retry_attempts = 0
    }
  }

  # The target is named by its ARN built from parts (main.tf); the function
  # must exist before the first run.
  depends_on = [aws_lambda_function.this]
}
