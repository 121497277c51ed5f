#!/usr/bin/env bash
# Installs the peer CLIs the tests cross-check against (crane, regctl, cosign, helm) with
# `go install` into a cache directory outside the repo, skipping any already at the pinned
# version. Prints the directory. Cold, on 2 cores: cosign ~4.5 min, helm ~2.5 min, the others ~1 min.
set -euo pipefail

dir=${PROMOTER_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/promoter/bin}
mkdir -p "$dir"

# name=module/cmd/path@version
tools=(
  "crane=github.com/google/go-containerregistry/cmd/crane@v0.22.1"
  "regctl=github.com/regclient/regclient/cmd/regctl@v0.11.7"
  "cosign=github.com/sigstore/cosign/v3/cmd/cosign@v3.1.3"
  "helm=helm.sh/helm/v3/cmd/helm@v3.22.0"
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
echo "$dir"
