# The recipes need no provider, so these runs use none. The files are also
# fed to real containerd and parsed by each format's parser in
# functions/registry/recipes_test.go.

variables {
  mirror_url = "https://abc123.lambda-url.us-east-1.on.aws"
  upstreams = {
    "docker.io" = "https://registry-1.docker.io"
    "ghcr.io"   = "https://ghcr.io/"
  }
}

run "https_mirror" {
  command = plan

  assert {
    condition     = keys(output.containerd_hosts_toml) == ["_default", "docker.io", "ghcr.io"]
    error_message = "one hosts.toml per upstream plus _default: ${jsonencode(keys(output.containerd_hosts_toml))}"
  }
  assert {
    condition     = output.containerd_hosts_toml["ghcr.io"] == "server = \"https://ghcr.io\"\n\n[host.\"https://abc123.lambda-url.us-east-1.on.aws\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
    error_message = "ghcr.io must fall back to its own registry, without the trailing slash: ${output.containerd_hosts_toml["ghcr.io"]}"
  }
  assert {
    condition     = !strcontains(output.containerd_hosts_toml["_default"], "server")
    error_message = "_default must leave the fallback to the registry the image names"
  }
  assert {
    condition     = keys(output.containerd_hosts_files) == ["/etc/containerd/certs.d/_default/hosts.toml", "/etc/containerd/certs.d/docker.io/hosts.toml", "/etc/containerd/certs.d/ghcr.io/hosts.toml"]
    error_message = "files must live under /etc/containerd/certs.d/<host>/hosts.toml"
  }
  assert {
    condition     = yamldecode(output.k3s_registries_yaml) == { mirrors = { "docker.io" = { endpoint = ["https://abc123.lambda-url.us-east-1.on.aws"] }, "ghcr.io" = { endpoint = ["https://abc123.lambda-url.us-east-1.on.aws"] } } }
    error_message = "k3s must send both registries to the mirror"
  }
  assert {
    condition     = !strcontains(output.buildkitd_toml, "http = true") && strcontains(output.buildkitd_toml, "mirrors = [\"abc123.lambda-url.us-east-1.on.aws\"]")
    error_message = "BuildKit mirrors are hosts without a scheme, and an https mirror is not marked http: ${output.buildkitd_toml}"
  }
  assert {
    condition     = yamldecode(output.karpenter_ec2nodeclass_patch).spec.userData == output.al2023_user_data
    error_message = "the Karpenter patch must carry the AL2023 user data"
  }
}

run "plain_http_mirror_for_buildkit" {
  command = plan
  variables {
    mirror_url = "http://10.0.0.5:5000"
  }

  assert {
    condition     = strcontains(output.buildkitd_toml, "[registry.\"10.0.0.5:5000\"]\n  http = true\n")
    error_message = "a plain-HTTP mirror needs http = true on its own table: ${output.buildkitd_toml}"
  }
}

run "rejects_mirror_url_with_trailing_slash" {
  command = plan
  variables {
    mirror_url = "https://abc123.lambda-url.us-east-1.on.aws/"
  }
  expect_failures = [var.mirror_url]
}

run "rejects_upstream_url_with_path" {
  command = plan
  variables {
    upstreams = { "docker.io" = "https://registry-1.docker.io/v2/" }
  }
  expect_failures = [var.upstreams]
}

run "rejects_no_upstreams" {
  command = plan
  variables {
    upstreams = {}
  }
  expect_failures = [var.upstreams]
}
