#!/usr/bin/env bash
# Builds rootless BuildKit (buildkitd, buildctl and buildctl-daemonless.sh) from Go modules into a
# cache directory outside the repo, and prepares this machine to run it the way the
# moby/buildkit rootless image does: rootlesskit, newuidmap/newgidmap, runc, git and ssh from apt,
# and an unprivileged build user with /etc/subuid and /etc/subgid ranges. sshd (openssh-server)
# is installed for the tests that serve git over SSH; they start their own.
#
#   hack/buildkit.sh            build (or reuse) and print the binary directory
#
# BUILDKIT_VERSION picks the release; PROMOTER_BUILDKIT overrides the directory; PROMOTER_BUILD_USER
# names the build user (default promoter-build). A build is skipped when the directory already
# holds binaries stamped with the same version. Cold, on 2 cores: ~5-8 min.
set -euo pipefail

BUILDKIT_VERSION=${BUILDKIT_VERSION:-v0.34.2}
BUILD_USER=${PROMOTER_BUILD_USER:-promoter-build}
dir=${PROMOTER_BUILDKIT:-${XDG_CACHE_HOME:-$HOME/.cache}/promoter/buildkit-${BUILDKIT_VERSION}}
stamp="$dir/.stamp"
want="buildkit=${BUILDKIT_VERSION}"

sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"

# Packages: the command each one provides, so a second run asks apt nothing.
need=()
command -v rootlesskit >/dev/null 2>&1 || need+=(rootlesskit)
command -v newuidmap >/dev/null 2>&1 || need+=(uidmap)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v git >/dev/null 2>&1 || need+=(git)
# buildkitd runs `ssh` for ssh:// and scp-style git URLs; the tests run sshd.
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
[ -x /bin/busybox ] || need+=(busybox-static)
if ((${#need[@]})); then
  echo "installing ${need[*]} (apt)" >&2
  if [[ " ${need[*]} " == *" openssh-server "* ]]; then
    # Debian starts the system sshd on 0.0.0.0:22 after installing it unless this file exists,
    # and that would take the port 22 the tests serve scp-style URLs on.
    $sudo_cmd mkdir -p /etc/ssh
    $sudo_cmd touch /etc/ssh/sshd_not_to_be_run
  fi
  $sudo_cmd apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

# The build user: uid 1000 (the rootless image's) when free, else the next free one.
if ! id -u "$BUILD_USER" >/dev/null 2>&1; then
  uid=1000
  while getent passwd "$uid" >/dev/null || getent group "$uid" >/dev/null; do uid=$((uid + 1)); done
  echo "creating build user $BUILD_USER (uid $uid)" >&2
  $sudo_cmd groupadd -g "$uid" "$BUILD_USER"
  $sudo_cmd useradd -m -u "$uid" -g "$uid" -s /bin/sh "$BUILD_USER"
fi
for f in /etc/subuid /etc/subgid; do
  if ! grep -q "^${BUILD_USER}:" "$f" 2>/dev/null; then
    # 65536 ids above every range already handed out (and above 100000).
    start=$(awk -F: 'BEGIN{m=100000} {e=$2+$3; if (e>m) m=e} END{print m}' "$f" 2>/dev/null || echo 100000)
    echo "${BUILD_USER}:${start}:65536" | $sudo_cmd tee -a "$f" >/dev/null
  fi
done

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$dir/buildkitd" && -x "$dir/buildctl" && -x "$dir/buildctl-daemonless.sh" ]]; then
  echo "$dir"
  exit 0
fi
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# `go install github.com/moby/buildkit/cmd/buildkitd@VERSION` is refused (the module's go.mod has
# exclude directives), so a throwaway module requires it and installs both commands.
(
  cd "$work"
  go mod init promoter.local/buildkit >/dev/null 2>&1
  cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "github.com/moby/buildkit/cmd/buildctl"
	_ "github.com/moby/buildkit/cmd/buildkitd"
)
GO
  echo "require github.com/moby/buildkit ${BUILDKIT_VERSION}" >>go.mod
  GOFLAGS=-mod=mod go mod tidy
  GOFLAGS=-mod=mod GOBIN="$dir" CGO_ENABLED=0 go install -trimpath -ldflags=-s \
    github.com/moby/buildkit/cmd/buildkitd github.com/moby/buildkit/cmd/buildctl
  src=$(go list -m -f '{{.Dir}}' github.com/moby/buildkit)
  install -m 0755 "$src/examples/buildctl-daemonless/buildctl-daemonless.sh" "$dir/buildctl-daemonless.sh"
) >&2

echo "$want" >"$stamp"
echo "$dir"
