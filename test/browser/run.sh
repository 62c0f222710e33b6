#!/usr/bin/env bash
# Runs dashboard.mjs when what it needs is here: Node.js, Debian's chromium and playwright-core
# (npm ci in this folder; scripts/test does both). Otherwise says what is missing and exits 77,
# which CTest reports as skipped (a packager's plain build need not have a browser).
#
#   run.sh /path/to/chorus SCREENSHOT
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v node > /dev/null || { echo "SKIP: node (Node.js) is not installed"; exit 77; }
[ -x /usr/bin/chromium ] || { echo "SKIP: chromium is not installed"; exit 77; }
[ -d "$here/node_modules/playwright-core" ] ||
  { echo "SKIP: playwright-core is not installed (npm ci in $here)"; exit 77; }
mkdir -p "$(dirname "$2")"
SCREENSHOT="$2" exec node "$here/dashboard.mjs" "$1" /usr/bin/chromium
