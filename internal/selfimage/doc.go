// Package selfimage builds promoter's own container image without a Docker daemon: per
// platform it compiles a static binary of ./cmd/promoter (CGO_ENABLED=0, GOOS/GOARCH), lays
// it on a minimal base it assembles itself (the build machine's CA bundle, /etc/passwd and
// /etc/group with the non-root user 65532, no shell), writes an SPDX 2.3 SBOM of the
// binary's Go modules from its build info, and pushes image and SBOM (an OCI referrer of
// the image) to a registry: by digest, then optionally under the arch tag a merge-only
// promoter pipeline takes ({revision}-{arch}), and optionally the multi-arch index.
//
// The output is deterministic: file times, config and history dates and the SBOM's
// creation date are one fixed time (SOURCE_DATE_EPOCH, else the commit time), so one
// commit gives the same digests on any machine with the same Go toolchain.
//
// hack/image.sh (hack/image is its main) and the dogfood end-to-end test run this package.
// It must not be imported by the daemon or the CLI: the promoter binary never builds itself.
package selfimage
