# Node-side configuration that points container runtimes at the mirror, one
# recipe per runtime or node family. Every format is rendered with
# jsonencode/yamlencode so that hosts and URLs are quoted by the encoder, never
# by hand; a JSON string is also a valid TOML basic string for the characters
# a URL can hold.

locals {
  mirror_url  = var.mirror_url
  mirror_host = regex("^https?://(.+)$", var.mirror_url)[0]
  mirror_http = startswith(var.mirror_url, "http://")

  upstream_urls = { for host, url in var.upstreams : host => trimsuffix(url, "/") }

  # containerd hosts.toml, one per registry directory under config_path
  # (https://github.com/containerd/containerd/blob/main/docs/hosts.md):
  # `server` is the registry itself, tried after the mirror; the mirror has
  # the pull and resolve capabilities only (never push). containerd adds
  # ?ns=<registry host> to every request it sends to a host that is not the
  # registry's own, which is how one mirror URL serves every registry.
  mirror_host_table = <<-EOT
    [host.${jsonencode(local.mirror_url)}]
      capabilities = ["pull", "resolve"]
  EOT

  # `_default` is the directory containerd uses for a registry without its
  # own (hosts.md, "Registry Host Namespace"). It has no `server`, so the
  # fallback is the registry the image names. A registry the mirror does not
  # serve gets 404 NAME_UNKNOWN from it and containerd moves on to that
  # fallback.
  containerd_hosts_toml = merge(
    {
      for host, url in local.upstream_urls : host => "server = ${jsonencode(url)}\n\n${local.mirror_host_table}"
    },
    { "_default" = local.mirror_host_table },
  )

  containerd_hosts_files = {
    for dir, content in local.containerd_hosts_toml : "/etc/containerd/certs.d/${dir}/hosts.toml" => content
  }

  # Bottlerocket: settings.container-registry.mirrors, an array of tables
  # with `registry` and `endpoint`
  # (https://bottlerocket.dev/en/os/1.20.x/api/settings/container-registry/).
  # Bottlerocket renders them into containerd's registry configuration, so
  # requests carry ?ns= as above.
  bottlerocket_settings_toml = join("\n", [
    for host in sort(keys(local.upstream_urls)) :
    "[[settings.container-registry.mirrors]]\nregistry = ${jsonencode(host)}\nendpoint = [${jsonencode(local.mirror_url)}]\n"
  ])

  # k3s /etc/rancher/k3s/registries.yaml: mirrors.<registry>.endpoint
  # (https://docs.k3s.io/installation/private-registry). k3s writes
  # containerd hosts.toml files from it and always tries the registry itself
  # last ("Default Endpoint Fallback").
  k3s_registries_yaml = yamlencode({
    mirrors = { for host in keys(local.upstream_urls) : host => { endpoint = [local.mirror_url] } }
  })

  # BuildKit /etc/buildkit/buildkitd.toml: [registry."<host>"] mirrors take
  # host[:port] without a scheme; `http = true` on the mirror's own table
  # for a plain-HTTP mirror
  # (https://docs.docker.com/build/buildkit/configure/ and the
  # RegistryConfig type of github.com/moby/buildkit/util/resolver/config).
  buildkitd_toml = join("\n", concat(
    [
      for host in sort(keys(local.upstream_urls)) :
      "[registry.${jsonencode(host)}]\n  mirrors = [${jsonencode(local.mirror_host)}]\n"
    ],
    local.mirror_http ? ["[registry.${jsonencode(local.mirror_host)}]\n  http = true\n"] : [],
  ))

  # EKS AL2023 user data is a MIME multi-part document; nodeadm reads the
  # application/node.eks.aws parts and merges them with the NodeConfig EKS or
  # Karpenter adds, and cloud-init runs the others
  # (https://awslabs.github.io/amazon-eks-ami/nodeadm/ and its "Examples"
  # page). This one has a single cloud-config part whose write_files puts the
  # hosts.toml files in /etc/containerd/certs.d, the first directory of the
  # AMI's config_path; containerd reads them at each pull, so no restart is
  # needed. The boundary is a token no URL or TOML here can contain.
  mime_boundary = "==PULLTHROUGH-NODE-RECIPE=="
  cloud_config = "#cloud-config\n${yamlencode({
    write_files = [
      for path in sort(keys(local.containerd_hosts_files)) : {
        path        = path
        owner       = "root:root"
        permissions = "0644"
        content     = local.containerd_hosts_files[path]
      }
    ]
  })}"
  al2023_user_data = join("\n", [
    "MIME-Version: 1.0",
    "Content-Type: multipart/mixed; boundary=\"${local.mime_boundary}\"",
    "",
    "--${local.mime_boundary}",
    "Content-Type: text/cloud-config; charset=\"us-ascii\"",
    "",
    trimsuffix(local.cloud_config, "\n"),
    "",
    "--${local.mime_boundary}--",
    "",
  ])

  # Karpenter EC2NodeClass: for amiFamily AL2023 spec.userData may be a MIME
  # multi-part document that Karpenter merges with its own NodeConfig part
  # (https://karpenter.sh/docs/concepts/nodeclasses/, "spec.userData"). A
  # merge patch: kubectl patch ec2nodeclass NAME --type merge --patch-file F.
  karpenter_ec2nodeclass_patch = yamlencode({ spec = { userData = local.al2023_user_data } })
}
