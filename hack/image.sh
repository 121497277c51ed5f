#!/usr/bin/env bash
# Builds promoter's own image for linux/amd64 and linux/arm64 without a Docker daemon and
# pushes it (hack/image, internal/selfimage): a static binary on a minimal base (CA
# certificates, nonroot user 65532, no shell), OCI annotations, an SPDX SBOM attached to
# each platform image as a referrer. Credentials come from the docker config
# (~/.docker/config.json: `cosign login`, `crane auth login`, `docker login`).
#
#   bash hack/image.sh REGISTRY/REPO [TAG]        # push TAG-amd64, TAG-arm64 (TAG: the commit)
#   bash hack/image.sh --index REGISTRY/REPO v1.2.3   # also the multi-arch index v1.2.3
#   bash hack/image.sh --no-tag --report pushed.json REGISTRY/REPO TAG   # by digest; sign; then
#   bash hack/image.sh --tag-from pushed.json REGISTRY/REPO              # tag what was signed
#
# `go run ./hack/image --help` lists the flags. SOURCE_DATE_EPOCH, if set, is the time of
# every file and date in the image (default: the commit time), so one commit gives the same
# digests. About 1 min per platform on 2 cores with a warm Go build cache.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null 2>&1; then
  export PATH="/usr/local/go/bin:$PATH"
fi
exec go run ./hack/image "$@"
