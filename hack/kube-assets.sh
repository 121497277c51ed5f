#!/usr/bin/env bash
# Builds kube-apiserver and etcd from Go modules into a cache directory outside the repo,
# so the e2e tests get a real control plane on a machine with no container runtime.
#
#   hack/kube-assets.sh            build (or reuse) and print the asset directory
#
# KUBE_VERSION and ETCD_VERSION pick the releases; PROMOTER_KUBE_ASSETS overrides the directory.
# A build is skipped when the directory already holds binaries stamped with the same versions.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}
dir=${PROMOTER_KUBE_ASSETS:-${XDG_CACHE_HOME:-$HOME/.cache}/promoter/kube-assets/${KUBE_VERSION}-etcd-${ETCD_VERSION}}
stamp="$dir/.stamp"
want="kube-apiserver=${KUBE_VERSION} etcd=${ETCD_VERSION}"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$dir/kube-apiserver" && -x "$dir/etcd" ]]; then
  echo "$dir"
  exit 0
fi
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# kube-apiserver: a throwaway module that requires k8s.io/kubernetes and replaces every staging
# module (which k8s.io/kubernetes points at ./staging) with its published v0.X release.
staging_version="v0.${KUBE_VERSION#v1.}"
mkdir -p "$work/apiserver"
(
  cd "$work/apiserver"
  go mod init promoter.local/kube-apiserver >/dev/null 2>&1
  gomod=$(go mod download -json "k8s.io/kubernetes@${KUBE_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  {
    echo "require k8s.io/kubernetes ${KUBE_VERSION}"
    grep -oE '^[[:space:]]*k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' "$gomod" |
      awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
  } >>go.mod
  GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$dir/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
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
