#!/usr/bin/env bash
# Builds kube-apiserver and etcd from Go modules into a cache directory outside the repo,
# so the e2e tests get a real control plane on a machine with no container runtime.
#
#   hack/kube-assets.sh            build (or reuse) and print the asset directory
#
# KUBE_VERSION and ETCD_VERSION pick the releases; PROMOTER_KUBE_ASSETS overrides the directory.
# A build is skipped when the directory already holds binaries stamped with the same versions.
set -euo pipefail
source "$(dirname "$0")/lib/kube-module.sh"

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}
dir=${PROMOTER_KUBE_ASSETS:-${XDG_CACHE_HOME:-$HOME/.cache}/promoter/kube-assets/${KUBE_VERSION}-etcd-${ETCD_VERSION}}
stamp="$dir/.stamp"
# "stamped": the binary reports KUBE_VERSION (kube_ldflags), not v0.0.0-master.
want="kube-apiserver=${KUBE_VERSION} stamped etcd=${ETCD_VERSION}"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$dir/kube-apiserver" && -x "$dir/etcd" ]]; then
  echo "$dir"
  exit 0
fi
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# kube-apiserver: a throwaway module (see hack/lib/kube-module.sh).
mkdir -p "$work/apiserver"
(
  cd "$work/apiserver"
  kube_module promoter.local/kube-apiserver "$KUBE_VERSION"
  GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags="$(kube_ldflags "$KUBE_VERSION")" -o "$dir/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
) >&2

# etcd: a tiny main around etcdmain.Main.
mkdir -p "$work/etcd"
(
  cd "$work/etcd"
  go mod init promoter.local/etcd >/dev/null 2>&1
  cat >main.go <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" >/dev/null 2>&1
  GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$dir/etcd" .
) >&2

echo "$want" >"$stamp"
echo "$dir"
