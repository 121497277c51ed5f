#!/usr/bin/env bash
# Builds the binaries of a real one-node Kubernetes from Go modules into a cache directory
# outside the repo (kube-apiserver and etcd come from hack/kube-assets.sh):
#   kubelet, kube-controller-manager, kube-scheduler, kube-proxy   KUBE_VERSION, stamped with it
#   containerd, containerd-shim-runc-v2, ctr                       CONTAINERD_VERSION
#   coredns                                                        COREDNS_VERSION
# and installs what the node takes from Debian when missing: runc, the CNI plugins
# (/usr/lib/cni), iptables, iproute2, nsenter, busybox-static, setcap, newuidmap/newgidmap and
# rootlesskit. Running the node (cgroups, network namespace, teardown) is testenv's job.
#
#   hack/node.sh            build (or reuse) and print the binary directory
#
# PROMOTER_NODE_ASSETS overrides the directory. Each component is skipped when the directory
# already holds it stamped with the same version, so an interrupted build resumes.
# Cold, on 2 cores: kubelet ~4 min, the other three ~1.5 min together, containerd ~1.5 min,
# coredns ~2.5 min; ~9 min in all.
set -euo pipefail
source "$(dirname "$0")/lib/kube-module.sh"

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
COREDNS_VERSION=${COREDNS_VERSION:-v1.15.0}
dir=${PROMOTER_NODE_ASSETS:-${XDG_CACHE_HOME:-$HOME/.cache}/promoter/node-assets/${KUBE_VERSION}-containerd-${CONTAINERD_VERSION}-coredns-${COREDNS_VERSION}}

sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
# A non-root PATH on Debian lacks the sbin directories that runc, iptables and setcap are in.
where() { PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" command -v "$1"; }
installed() { [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]; }

# Packages: what each one provides, so a second run asks apt nothing.
need=()
where runc >/dev/null || need+=(runc)
installed containernetworking-plugins || need+=(containernetworking-plugins)
where iptables >/dev/null || need+=(iptables)
where ip >/dev/null || need+=(iproute2)
where nsenter >/dev/null || need+=(util-linux)
installed busybox-static || need+=(busybox-static)
where setcap >/dev/null || need+=(libcap2-bin)
where newuidmap >/dev/null || need+=(uidmap)
where rootlesskit >/dev/null || need+=(rootlesskit)
if ((${#need[@]})); then
  $sudo_cmd apt-get update -qq >&2
  # rootlesskit only where Debian packages it.
  if [[ " ${need[*]} " == *" rootlesskit "* ]] && ! apt-cache show rootlesskit >/dev/null 2>&1; then
    echo "rootlesskit: not packaged here, skipped" >&2
    keep=()
    for p in "${need[@]}"; do [[ "$p" == rootlesskit ]] || keep+=("$p"); done
    need=("${keep[@]}")
  fi
  if ((${#need[@]})); then
    echo "installing ${need[*]} (apt)" >&2
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
  fi
fi
for c in runc iptables ip nsenter setcap newuidmap newgidmap rootlesskit; do
  echo "$c: $(where "$c" || echo missing)" >&2
done
echo "busybox (static): $(dpkg-query -L busybox-static | grep 'bin/busybox$')" >&2
echo "cni plugins: /usr/lib/cni" >&2

mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
total=$SECONDS

# fresh NAME WANT BINARY...: true when NAME is stamped WANT and every BINARY is in the directory.
fresh() {
  local name=$1 want=$2 b
  shift 2
  [[ -f "$dir/.$name.version" && "$(cat "$dir/.$name.version")" == "$want" ]] || return 1
  for b in "$@"; do [[ -x "$dir/$b" ]] || return 1; done
}
built=""
took() {
  built=1
  printf '%s: built in %dm%02ds\n' "$1" $(((SECONDS - $2) / 60)) $(((SECONDS - $2) % 60)) >&2
}

# The Kubernetes node components: one throwaway module (see hack/lib/kube-module.sh), made
# only when one of them needs building. They share most packages, so after the first the build
# cache does most of the work.
for name in kubelet kube-controller-manager kube-scheduler kube-proxy; do
  fresh "$name" "$name=$KUBE_VERSION" "$name" && continue
  if [[ ! -f "$work/kube/go.mod" ]]; then
    mkdir -p "$work/kube"
    (cd "$work/kube" && kube_module promoter.local/kube-node "$KUBE_VERSION") >&2
    ldflags=$(cd "$work/kube" && kube_ldflags "$KUBE_VERSION")
  fi
  echo "building $name $KUBE_VERSION" >&2
  start=$SECONDS
  (cd "$work/kube" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -o "$dir/$name" "k8s.io/kubernetes/cmd/$name") >&2
  echo "$name=$KUBE_VERSION" >"$dir/.$name.version"
  took "$name" "$start"
done

# containerd: the daemon, the runc shim and ctr, without the snapshotters that need cgo.
if ! fresh containerd "containerd=$CONTAINERD_VERSION" containerd containerd-shim-runc-v2 ctr; then
  echo "building containerd $CONTAINERD_VERSION" >&2
  start=$SECONDS
  m=github.com/containerd/containerd/v2
  (cd "$work" && GOBIN="$dir" GOFLAGS= CGO_ENABLED=0 go install -trimpath -tags "no_btrfs no_devmapper no_zfs" \
    -ldflags="-s -X $m/version.Version=$CONTAINERD_VERSION" \
    "$m/cmd/containerd@$CONTAINERD_VERSION" "$m/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
    "$m/cmd/ctr@$CONTAINERD_VERSION") >&2
  echo "containerd=$CONTAINERD_VERSION" >"$dir/.containerd.version"
  took containerd "$start"
fi

if ! fresh coredns "coredns=$COREDNS_VERSION" coredns; then
  echo "building coredns $COREDNS_VERSION" >&2
  start=$SECONDS
  (cd "$work" && GOBIN="$dir" GOFLAGS= CGO_ENABLED=0 go install -trimpath -ldflags=-s \
    "github.com/coredns/coredns@$COREDNS_VERSION") >&2
  echo "coredns=$COREDNS_VERSION" >"$dir/.coredns.version"
  took coredns "$start"
fi

[[ -z "$built" ]] || printf 'node assets: %dm%02ds in all\n' $(((SECONDS - total) / 60)) $(((SECONDS - total) % 60)) >&2
echo "$dir"
