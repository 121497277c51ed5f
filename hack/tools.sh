#!/usr/bin/env bash
# Installs the peer CLIs the tests and the benchmark cross-check against (crane, regctl,
# cosign, helm, and distribution's `registry` binary at the version in go.mod) with
# `go install` into a cache directory outside the repo, skipping any already at the pinned
# version, and Debian's skopeo with apt-get when it is not on PATH. Prints the directory.
# Cold, on 2 cores: cosign ~4.5 min, helm ~2.5 min, registry ~2 min, the others ~1 min.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

dir=${PROMOTER_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/promoter/bin}
mkdir -p "$dir"

# name=module/cmd/path@version
tools=(
  "crane=github.com/google/go-containerregistry/cmd/crane@v0.22.1"
  "regctl=github.com/regclient/regclient/cmd/regctl@v0.11.7"
  "cosign=github.com/sigstore/cosign/v3/cmd/cosign@v3.1.3"
  "helm=helm.sh/helm/v3/cmd/helm@v3.22.0"
  # The registry the daemon embeds for tests and `promoter dev`, as a process of its own.
  "registry=github.com/distribution/distribution/v3/cmd/registry@$(awk '$1 == "github.com/distribution/distribution/v3" {print $2}' "$root/go.mod")"
)

for t in "${tools[@]}"; do
  name=${t%%=*}
  pkg=${t#*=}
  stamp="$dir/.$name.version"
  if [[ -x "$dir/$name" && -f "$stamp" && "$(cat "$stamp")" == "$pkg" ]]; then
    continue
  fi
  echo "installing $name ($pkg)" >&2
  # Each tool resolves its own dependencies, independent of this module's go.mod.
  (cd "$dir" && GOBIN="$dir" GOFLAGS= go install "$pkg") >&2
  echo "$pkg" >"$stamp"
done

# skopeo: Debian's package (the benchmark compares promote with `skopeo copy --all`).
if ! command -v skopeo >/dev/null 2>&1; then
  echo "installing skopeo (apt-get)" >&2
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends skopeo >&2
fi
echo "$dir"
