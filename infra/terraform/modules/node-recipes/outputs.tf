output "containerd_hosts_toml" {
  description = "containerd hosts.toml content by directory under config_path (/etc/containerd/certs.d): one per upstream host, plus _default for every other registry (the mirror first, then the registry itself)."
  value       = local.containerd_hosts_toml
}

output "containerd_hosts_files" {
  description = "The same hosts.toml files keyed by their full path under /etc/containerd/certs.d."
  value       = local.containerd_hosts_files
}

output "bottlerocket_settings_toml" {
  description = "Bottlerocket user data (settings.container-registry.mirrors) sending every upstream to the mirror."
  value       = local.bottlerocket_settings_toml
}

output "k3s_registries_yaml" {
  description = "k3s /etc/rancher/k3s/registries.yaml sending every upstream to the mirror."
  value       = local.k3s_registries_yaml
}

output "buildkitd_toml" {
  description = "BuildKit /etc/buildkit/buildkitd.toml registry mirrors for every upstream."
  value       = local.buildkitd_toml
}

output "al2023_user_data" {
  description = "EKS AL2023 (nodeadm) MIME multi-part user data with one cloud-config part that writes the hosts.toml files; EKS and Karpenter merge it with their own NodeConfig."
  value       = local.al2023_user_data
}

output "karpenter_ec2nodeclass_patch" {
  description = "YAML merge patch setting an AL2023 EC2NodeClass's spec.userData to al2023_user_data (kubectl patch ec2nodeclass NAME --type merge --patch-file FILE)."
  value       = local.karpenter_ec2nodeclass_patch
}
