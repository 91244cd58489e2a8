output "mirror_url" {
  description = "Base URL of the mirror."
  value       = module.pullthrough.mirror_url
}

output "daemon_json" {
  description = "Contents for /etc/docker/daemon.json."
  value       = module.pullthrough.daemon_json
}

output "containerd_hosts_toml" {
  description = "Contents for /etc/containerd/certs.d/docker.io/hosts.toml."
  value       = module.pullthrough.containerd_hosts_toml
}

output "doctor_command" {
  description = "Command that checks the mirror as its clients use it (pullthrough doctor)."
  value       = module.pullthrough.doctor_command
}

output "bucket_name" {
  description = "Name of the cache bucket."
  value       = module.pullthrough.bucket_name
}

output "function_name" {
  description = "Name of the Lambda function."
  value       = module.pullthrough.function_name
}

output "function_environment" {
  description = "Environment the function runs with."
  value       = module.pullthrough.function_environment
}

output "dashboard_url" {
  description = "CloudWatch dashboard with the cache's hits, misses, fills and upstream throttling."
  value       = module.pullthrough.dashboard_url
}

output "alarm_arns" {
  description = "Alarms that fire when an upstream rate-limits the mirror or a background fill from it fails, by alarm name."
  value       = module.pullthrough.alarm_arns
}

output "containerd_hosts_toml_by_registry" {
  description = "hosts.toml for /etc/containerd/certs.d/<registry>/hosts.toml, by registry (and _default)."
  value       = module.pullthrough.containerd_hosts_toml_by_registry
}

output "al2023_user_data" {
  description = "EKS AL2023 user data that writes those hosts.toml files."
  value       = module.pullthrough.al2023_user_data
}
