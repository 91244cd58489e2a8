# The function writes CloudWatch Embedded Metric Format in each request's log
# line, so CloudWatch Logs turns the log into metrics without any API call or
# permission of the function's own. Namespace "pullthrough", one dimension:
# Upstream, the registry host (docker.io, ghcr.io, ...; "none" for requests
# that reached no registry, such as GET /v2/). Two deployments in one account
# and region therefore add up in the same metrics.

locals {
  metric_namespace = "pullthrough"

  region = data.aws_region.current.region

  dashboard_widgets = [
    { title = "Cache hits, misses and stale serves", stat = "Sum", metrics = ["Hits", "Misses", "StaleServes"] },
    { title = "Bytes filled from upstream", stat = "Sum", metrics = ["BytesFilled"] },
    { title = "Upstream errors and throttled requests (429)", stat = "Sum", metrics = ["UpstreamErrors", "UpstreamThrottled"] },
    # Only sent when the upstream reports it (Docker Hub's ratelimit-remaining);
    # the lowest value is the one that matters.
    { title = "Upstream rate-limit budget left (lowest)", stat = "Minimum", metrics = ["UpstreamRateLimitRemaining"] },
  ]

  # The console is per partition; the dashboard lives in the function's region.
  console_host = lookup({
    aws-cn     = "console.amazonaws.cn"
    aws-us-gov = "console.amazonaws-us-gov.com"
  }, data.aws_partition.current.partition, "console.aws.amazon.com")
}

resource "aws_cloudwatch_dashboard" "this" {
  count = var.create_dashboard ? 1 : 0

  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = [
      for i, w in local.dashboard_widgets : {
        type   = "metric"
        x      = (i % 2) * 12
        y      = floor(i / 2) * 6
        width  = 12
        height = 6
        properties = {
          title  = w.title
          region = local.region
          view   = "timeSeries"
          stat   = w.stat
          period = 300
          # One line per metric and upstream host.
          metrics = [
            for p in setproduct(w.metrics, local.upstream_hosts) :
            [local.metric_namespace, p[0], "Function", var.name, "Upstream", p[1], { label = "${p[1]} ${p[0]}" }]
          ]
        }
      }
    ]
  })
}

# An upstream that answers 429 is rate-limiting the mirror: cached content is
# still served (stale tags included), but every miss for that registry fails
# until the limit resets. See README for what to do.
resource "aws_cloudwatch_metric_alarm" "upstream_throttled" {
  for_each = var.create_alarms ? toset(local.upstream_hosts) : toset([])

  alarm_name        = "${var.name}-upstream-throttled-${each.key}"
  alarm_description = "${each.key} rate-limited the ${var.name} pull-through cache (HTTP 429) in the last 5 minutes. Cached images still pull; misses from ${each.key} fail until the limit resets. Add upstream credentials to the secret, raise the upstream plan, or warm images ahead of demand."

  namespace   = local.metric_namespace
  metric_name = "UpstreamThrottled"
  dimensions = {
    Function = var.name
    Upstream = each.key
  }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  # Metrics exist only while clients pull; no pulls is no throttling.
  treat_missing_data = "notBreaching"

  alarm_actions = var.alarm_actions
  ok_actions    = var.alarm_actions

  tags = var.tags
}

# A blob fill that ran in its own invocation and failed (the upstream sent a
# corrupt or cut blob, or errors): the function logs FillFailures. Waiting
# clients got 503 and retry, which starts a new fill; repeated failures mean
# the upstream keeps failing for some blob.
resource "aws_cloudwatch_metric_alarm" "fill_failed" {
  for_each = var.create_alarms ? toset(local.upstream_hosts) : toset([])

  alarm_name        = "${var.name}-fill-failed-${each.key}"
  alarm_description = "A background fill of a large blob from ${each.key} into the ${var.name} pull-through cache failed in the last 5 minutes. Clients were told to retry. Search the function's logs for \"background fill failed\" to see the blob and the cause."

  namespace   = local.metric_namespace
  metric_name = "FillFailures"
  dimensions = {
    Function = var.name
    Upstream = each.key
  }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"

  alarm_actions = var.alarm_actions
  ok_actions    = var.alarm_actions

  tags = var.tags
}

# Alarms on the function itself, from the metrics Lambda publishes in
# AWS/Lambda by FunctionName (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html).
# With publish, the unqualified name still counts every version and alias.
locals {
  concurrency_threshold = coalesce(
    var.alarm_thresholds.concurrency,
    # Unreserved functions share the account's limit (1,000 by default).
    var.reserved_concurrent_executions == null ? 800 : max(1, floor(var.reserved_concurrent_executions * 0.8)),
  )

  function_alarms = {
    errors = {
      metric      = "Errors"
      statistic   = "Sum"
      threshold   = var.alarm_thresholds.errors
      description = "The ${var.name} function failed or timed out at least ${var.alarm_thresholds.errors} times in 5 minutes (Lambda Errors: crashes and timeouts, not registry errors answered to clients). Read the log group for the cause."
    }
    throttles = {
      metric      = "Throttles"
      statistic   = "Sum"
      threshold   = var.alarm_thresholds.throttles
      description = "Lambda refused invocations of ${var.name} for want of concurrency in the last 5 minutes: clients got 429 or 503 and fell back to the upstream or retried. Raise reserved_concurrent_executions or the account limit."
    }
    concurrency = {
      metric      = "ConcurrentExecutions"
      statistic   = "Maximum"
      threshold   = local.concurrency_threshold
      description = "${var.name} ran ${local.concurrency_threshold} or more invocations at once in the last 5 minutes, close to its concurrency limit; throttling follows."
    }
    duration = {
      metric    = "Duration"
      statistic = "Maximum"
      # Milliseconds.
      threshold   = floor(var.timeout * 1000 * var.alarm_thresholds.duration_percent / 100)
      description = "An invocation of ${var.name} ran for ${var.alarm_thresholds.duration_percent}% or more of its ${var.timeout}s timeout in the last 5 minutes: a blob fill is close to being cut off (see fill_timeout and large_blob_policy)."
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "function" {
  for_each = var.create_alarms ? local.function_alarms : {}

  alarm_name        = "${var.name}-function-${each.key}"
  alarm_description = each.value.description

  namespace   = "AWS/Lambda"
  metric_name = each.value.metric
  dimensions = {
    FunctionName = aws_lambda_function.this.function_name
  }
  statistic           = each.value.statistic
  period              = 300
  evaluation_periods  = 1
  threshold           = each.value.threshold
  comparison_operator = "GreaterThanOrEqualToThreshold"
  # Lambda publishes nothing while nobody pulls.
  treat_missing_data = "notBreaching"

  alarm_actions = var.alarm_actions
  ok_actions    = var.alarm_actions

  tags = var.tags
}
