#!/usr/bin/env bash
# The benchmark (README "Performance"): installs what it needs (hack/tools.sh: the
# distribution registry binary, crane, regctl, cosign and Debian's skopeo), then runs
# ./hack/bench, which builds promoter from this tree, starts real `registry` and
# `promoter serve` processes and prints one markdown table on stdout (progress on stderr).
# Arguments go to the bench: `bash hack/bench.sh --storage disk --revisions 1010`,
# `bash hack/bench.sh --quick`, `go run ./hack/bench --help` lists them.
# A full run takes about 5 minutes on 2 cores (4.5 min measured, tmpfs).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null 2>&1; then
  export PATH="/usr/local/go/bin:$PATH"
fi
PROMOTER_TOOLS=$(bash hack/tools.sh)
export PROMOTER_TOOLS
export PATH="$PROMOTER_TOOLS:$PATH"
exec go run ./hack/bench "$@"
