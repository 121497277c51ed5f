#!/usr/bin/env bash
# Installs Debian's chromium (and a font to render the page with) from apt when it is missing,
# for the status page's browser test (e2e/statuspage_test.go drives it headless with chromedp),
# and prints its path.
#
#   hack/chromium.sh            install (or reuse) and print the chromium binary
#
# PROMOTER_CHROMIUM names a browser to use instead; nothing is installed then. A second run
# asks apt nothing. Cold: about a minute (some 100 MB of packages).
set -euo pipefail

if [ -n "${PROMOTER_CHROMIUM:-}" ]; then
  echo "$PROMOTER_CHROMIUM"
  exit 0
fi
if ! command -v chromium >/dev/null 2>&1 || [ ! -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  echo "installing chromium fonts-dejavu-core (apt)" >&2
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
command -v chromium
