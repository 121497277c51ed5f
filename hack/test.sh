#!/usr/bin/env bash
# The one test command (README "Test it"; .ci/run calls exactly this):
#   1. go vet
#   2. builds or reuses the real components' binaries: kube-apiserver + etcd (hack/kube-assets.sh),
#      the node's kubelet, kube-controller-manager, kube-scheduler, kube-proxy, containerd and
#      CoreDNS, with runc and the CNI plugins from apt (hack/node.sh),
#      the peer CLIs crane, regctl, cosign, helm, distribution's registry and skopeo (hack/tools.sh) and rootless BuildKit
#      (hack/buildkit.sh, which also installs rootlesskit, uidmap, runc, git, openssh and busybox-static
#      from apt and creates the build user), a private sigstore, Fulcio and the timestamp
#      authority (hack/sigstore.sh), cached under ~/.cache/promoter, and chromium from
#      apt (hack/chromium.sh) for the status page's browser test
#   3. unit tests with -race
#   4. end-to-end tests against real registries, NATS JetStream, kube-apiserver and BuildKit
# Every test that needs a component fails (never skips) when CI is set; this script sets it.
set -euo pipefail
cd "$(dirname "$0")/.."

export CI=${CI:-true}
log() { printf '\n== %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }

# -race needs cgo, so a C compiler; a fresh Debian machine may not have one.
if ! command -v gcc >/dev/null 2>&1; then
  log "installing gcc (for go test -race)"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null
fi

log "go vet"
go vet ./...
# promoter dev is its own build (cmd/promoter/dev.go, README "Two commands").
go vet -tags dev ./cmd/promoter

log "kube-apiserver and etcd"
PROMOTER_KUBE_ASSETS=$(bash hack/kube-assets.sh)
export PROMOTER_KUBE_ASSETS
log "kubelet, controller-manager, scheduler, kube-proxy, containerd and CoreDNS (the real node)"
PROMOTER_NODE_ASSETS=$(bash hack/node.sh)
export PROMOTER_NODE_ASSETS
log "peer tools"
PROMOTER_TOOLS=$(bash hack/tools.sh)
export PROMOTER_TOOLS
export PATH="$PROMOTER_TOOLS:$PATH"
log "rootless BuildKit"
PROMOTER_BUILDKIT=$(bash hack/buildkit.sh)
export PROMOTER_BUILDKIT
log "private sigstore (Fulcio, timestamp authority)"
PROMOTER_SIGSTORE=$(bash hack/sigstore.sh)
export PROMOTER_SIGSTORE

log "chromium (the status page's browser test)"
PROMOTER_CHROMIUM=$(bash hack/chromium.sh)
export PROMOTER_CHROMIUM

log "unit tests (-race)"
go test -race -count=1 -timeout 20m $(go list ./... | grep -v -e /e2e -e /charts)
go test -race -count=1 -tags dev ./cmd/promoter

log "end-to-end tests"
# go list names only directories that hold Go packages, so a pattern never fails for lack of one.
go test -count=1 -timeout 40m $(go list ./... | grep -e /e2e -e /charts)
