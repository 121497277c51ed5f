#!/usr/bin/env bash
# Builds a private sigstore stack for the keyless e2e tests (internal/testenv/sigstore.go):
# Fulcio (the certificate authority, with an ephemeral CA), the timestamp authority, and
# Rekor v2 (rekor-tiles' posix server, installed as rekor-server). Each is `go install`ed from the Go module proxy into a cache directory
# outside the repo, skipping any already at the pinned version, and the directory is
# printed on stdout (logs go to stderr).
#
#   hack/sigstore.sh            build (or reuse) and print the directory
#
# Cold, on 2 cores: fulcio ~3 min, timestamp-server ~1.5 min, rekor-server ~1 min.
# PROMOTER_SIGSTORE overrides the directory.
set -euo pipefail

FULCIO_VERSION=${FULCIO_VERSION:-v1.8.8}
TSA_VERSION=${TSA_VERSION:-v2.1.3}
REKOR_VERSION=${REKOR_VERSION:-v2.3.0}
dir=${PROMOTER_SIGSTORE:-${XDG_CACHE_HOME:-$HOME/.cache}/promoter/sigstore}
mkdir -p "$dir"

# name=env module/cmd/path@version (the installed binary is named after the last path
# element; name is what it is renamed to)
tools=(
  # Fulcio's module is built without cgo, as its release is (no PKCS#11 provider).
  "fulcio=CGO_ENABLED=0 github.com/sigstore/fulcio@${FULCIO_VERSION}"
  "timestamp-server=CGO_ENABLED=0 github.com/sigstore/timestamp-authority/v2/cmd/timestamp-server@${TSA_VERSION}"
  "rekor-server=CGO_ENABLED=0 github.com/sigstore/rekor-tiles/v2/cmd/rekor-server/posix@${REKOR_VERSION}"
)

for t in "${tools[@]}"; do
  name=${t%%=*}
  spec=${t#*=}
  envs=${spec% *}
  pkg=${spec##* }
  stamp="$dir/.$name.version"
  if [[ -x "$dir/$name" && -f "$stamp" && "$(cat "$stamp")" == "$pkg" ]]; then
    continue
  fi
  echo "installing $name ($pkg)" >&2
  start=$(date +%s)
  built=${pkg%@*}
  built=${built##*/}
  # Each tool resolves its own dependencies, independent of this module's go.mod.
  (cd "$dir" && env $envs GOBIN="$dir" GOFLAGS= go install "$pkg") >&2
  if [[ "$built" != "$name" ]]; then
    mv -f "$dir/$built" "$dir/$name"
  fi
  echo "$pkg" >"$stamp"
  echo "installed $name in $(($(date +%s) - start)) s" >&2
done
echo "$dir"
