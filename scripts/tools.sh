#!/usr/bin/env bash
# Installs the real servers and clients the tests run against into a cache
# directory outside the repository, skipping whatever is already there.
# Every tool version is pinned here and only here.
set -euo pipefail

VERSITYGW_VERSION=v1.8.0
REGISTRY_VERSION=v3.1.2
CRANE_VERSION=v0.22.1
# Current clients beside Debian's containerd 1.6: containerd 2.x and its ctr
# (installed under bin/containerd-v2/ so they do not shadow Debian's), oras.
CONTAINERD2_VERSION=v2.4.2
ORAS_VERSION=v1.3.6
# kubelet's side of a node pull: crictl drives containerd's CRI plugin.
CRICTL_VERSION=v1.37.0
DEBIAN_PACKAGES="skopeo containerd docker.io jq podman systemd"

TOOLS="${PULLTHROUGH_TOOLS:-$HOME/.cache/pullthrough/tools}"
BIN="$TOOLS/bin"
mkdir -p "$BIN"

# go_tool NAME MODULE@VERSION [SUBDIR]: install once per version into
# $BIN (or $BIN/SUBDIR).
go_tool() {
  local name=$1 mod=$2 dir="$BIN${3:+/$3}"
  local stamp="$dir/.$1.version"
  if [[ -x "$dir/$name" && "$(cat "$stamp" 2>/dev/null)" == "$mod" ]]; then
    return
  fi
  echo "tools: installing $mod" >&2
  mkdir -p "$dir"
  GOBIN="$dir" GOFLAGS=-buildvcs=false go install "$mod"
  echo "$mod" >"$stamp"
}

go_tool versitygw "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
go_tool registry "github.com/distribution/distribution/v3/cmd/registry@$REGISTRY_VERSION"
go_tool crane "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"
go_tool containerd "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD2_VERSION" containerd-v2
go_tool ctr "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD2_VERSION" containerd-v2
go_tool oras "oras.land/oras/cmd/oras@$ORAS_VERSION"
go_tool crictl "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"

# Debian packages for the real-client tests (dockerd, containerd, skopeo,
# podman 4.3 for a registries.conf path-prefix mirror).
# Never at the cost of what a developer has installed: Debian's docker.io
# conflicts with docker-ce and containerd with containerd.io, and apt would
# remove those. A package whose install would remove anything is skipped;
# the tests then use the developer's own binaries from PATH if there are
# any, or skip with the reason recorded here in $BIN/.skip-<binary>.
declare -A PACKAGE_BINARIES=([docker.io]="dockerd docker" [containerd]="containerd ctr" [skopeo]="skopeo" [jq]="jq" [podman]="podman" [systemd]="systemd-analyze")
if [[ "${PULLTHROUGH_SKIP_APT:-}" != "1" ]]; then
  missing=()
  for p in $DEBIAN_PACKAGES; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      for b in ${PACKAGE_BINARIES[$p]:-}; do rm -f "$BIN/.skip-$b"; done
    else
      missing+=("$p")
    fi
  done
  if ((${#missing[@]})); then
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO=sudo
    $SUDO apt-get update -qq
    safe=()
    for p in "${missing[@]}"; do
      removes=$(apt-get install -s --no-install-recommends "$p" 2>/dev/null | awk '/^Remv /{print $2}' | tr '\n' ' ')
      if [[ -n $removes ]]; then
        echo "tools: not installing $p: apt would remove ${removes% }; tests needing it use your own binaries or skip" >&2
        for b in ${PACKAGE_BINARIES[$p]:-}; do
          echo "Debian's $p was not installed because it would remove ${removes% }" >"$BIN/.skip-$b"
        done
      else
        safe+=("$p")
      fi
    done
    if ((${#safe[@]})); then
      echo "tools: apt-get install ${safe[*]}" >&2
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${safe[@]}" >/dev/null
      for p in "${safe[@]}"; do
        for b in ${PACKAGE_BINARIES[$p]:-}; do rm -f "$BIN/.skip-$b"; done
      done
    fi
  fi
fi
echo "tools: ready in $BIN" >&2
