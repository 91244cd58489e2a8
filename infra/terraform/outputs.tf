output "mirror_url" {
  description = "Base URL of the mirror (the function URL without its trailing slash)."
  value       = trimsuffix(aws_lambda_function_url.this.function_url, "/")
}

output "daemon_json" {
  description = "Docker daemon configuration (/etc/docker/daemon.json) that uses the mirror. Docker applies registry-mirrors to docker.io images only and names no registry in its requests, so this is useful when docker.io is the default upstream. Merge it into an existing file rather than overwriting."
  value       = jsonencode({ "registry-mirrors" = [trimsuffix(aws_lambda_function_url.this.function_url, "/")] })
}

output "containerd_hosts_toml" {
  description = "containerd hosts.toml for the default upstream that tries the mirror first and falls back to the upstream. For Docker Hub save it as /etc/containerd/certs.d/docker.io/hosts.toml; other registries take the same file with their own server line."
  value       = <<-EOT
    server = "${local.upstream_urls[local.default_upstream]}"

    [host."${trimsuffix(aws_lambda_function_url.this.function_url, "/")}"]
      capabilities = ["pull", "resolve"]
  EOT
}

output "doctor_command" {
  description = "Command that checks the deployed mirror the way its clients use it (`pullthrough doctor`, a subcommand of the packaged binary; see README \"Check a deployment\"): it tests with a small public image and checks ?ns= routing for every configured upstream. Without docker.io among the upstreams, replace REPOSITORY:TAG with an image of the default upstream. Run it from a client network when client_cidrs is set, and add --token when client credentials are configured."
  value = join(" ", concat(
    ["pullthrough", "doctor", "--image"],
    [
      local.default_upstream == "docker.io" ? "library/alpine:latest" : (
        contains(local.upstream_hosts, "docker.io") ? "docker.io/library/alpine:latest" : "${local.default_upstream}/REPOSITORY:TAG"
      )
    ],
    flatten([for host in local.upstream_hosts : ["--ns", host]]),
    [trimsuffix(aws_lambda_function_url.this.function_url, "/")],
  ))
}

output "bucket_name" {
  description = "Name of the cache bucket."
  value       = local.bucket_id
}

output "bucket_arn" {
  description = "ARN of the cache bucket."
  value       = local.bucket_arn
}

output "function_name" {
  description = "Name of the Lambda function."
  value       = aws_lambda_function.this.function_name
}

output "function_arn" {
  description = "ARN of the Lambda function."
  value       = aws_lambda_function.this.arn
}

output "role_arn" {
  description = "ARN of the function's IAM role (the created one, or role_arn)."
  value       = local.role_arn
}

output "log_group_name" {
  description = "CloudWatch log group the function writes to."
  value       = aws_cloudwatch_log_group.this.name
}

output "upstream_credentials_secret_arn" {
  description = "ARN of the upstream credentials secret the function reads, or null."
  value       = local.upstream_credentials_secret_arn
}

output "function_environment" {
  description = "Environment the function runs with (the PULLTHROUGH_* configuration plus extra_environment); tests run the binary locally with it."
  value       = aws_lambda_function.this.environment[0].variables
}

output "upstream_hosts" {
  description = "Registry hosts the mirror serves, as they appear in the Upstream dimension of its metrics."
  value       = local.upstream_hosts
}

output "dashboard_name" {
  description = "Name of the CloudWatch dashboard, or null when create_dashboard is false."
  value       = one(aws_cloudwatch_dashboard.this[*].dashboard_name)
}

output "dashboard_url" {
  description = "Console URL of the CloudWatch dashboard, or null when create_dashboard is false."
  value = (
    var.create_dashboard
    ? "https://${local.console_host}/cloudwatch/home?region=${local.region}#dashboards/dashboard/${aws_cloudwatch_dashboard.this[0].dashboard_name}"
    : null
  )
}

output "alarm_arns" {
  description = "ARNs of the per-upstream alarms by alarm name: <name>-upstream-throttled-<host> and <name>-fill-failed-<host> for each registry host; empty when create_alarms is false. The function alarms are in function_alarm_arns."
  value = merge(
    { for alarm in aws_cloudwatch_metric_alarm.upstream_throttled : alarm.alarm_name => alarm.arn },
    { for alarm in aws_cloudwatch_metric_alarm.fill_failed : alarm.alarm_name => alarm.arn },
  )
}

output "sweep_schedule_arn" {
  description = "ARN of the daily sweep schedule, or null when retention_days is null."
  value       = local.sweep_enabled ? aws_scheduler_schedule.sweep[0].arn : null
}

output "function_alarm_arns" {
  description = "ARNs of the function alarms by name (errors, throttles, concurrency, duration); empty when create_alarms is false."
  value       = { for k, alarm in aws_cloudwatch_metric_alarm.function : k => alarm.arn }
}

output "role_policy_json" {
  description = "The role policy the function needs (exactly the calls it makes); attach it to an existing role given in role_arn."
  value       = data.aws_iam_policy_document.function.json
}

output "alias_arn" {
  description = "ARN of the alias the function URL serves, or null when publish is false."
  value       = one(aws_lambda_alias.this[*].arn)
}

output "function_version" {
  description = "Version the alias points at after this apply (\"$LATEST\" when publish is false)."
  value       = aws_lambda_function.this.version
}

output "containerd_hosts_toml_by_registry" {
  description = "containerd hosts.toml content by directory under /etc/containerd/certs.d: one per upstream host and _default for any other registry (the mirror first, then the registry itself)."
  value       = module.node_recipes.containerd_hosts_toml
}

output "bottlerocket_settings_toml" {
  description = "Bottlerocket user data (settings.container-registry.mirrors) sending every upstream to the mirror."
  value       = module.node_recipes.bottlerocket_settings_toml
}

output "k3s_registries_yaml" {
  description = "k3s /etc/rancher/k3s/registries.yaml sending every upstream to the mirror."
  value       = module.node_recipes.k3s_registries_yaml
}

output "buildkitd_toml" {
  description = "BuildKit /etc/buildkit/buildkitd.toml registry mirrors for every upstream."
  value       = module.node_recipes.buildkitd_toml
}

output "al2023_user_data" {
  description = "EKS AL2023 (nodeadm) MIME multi-part user data whose cloud-config part writes the hosts.toml files; EKS and Karpenter merge it with their own NodeConfig."
  value       = module.node_recipes.al2023_user_data
}

output "karpenter_ec2nodeclass_patch" {
  description = "YAML merge patch that sets an AL2023 EC2NodeClass's spec.userData to al2023_user_data."
  value       = module.node_recipes.karpenter_ec2nodeclass_patch
}
