#!/usr/bin/env bash
# Render a run's report.html in headless Chromium and save a PNG screenshot of it.
#
#   bash scripts/screenshot_report.sh runs/RUN [OUT.png]      # default OUT: RUN/report-screenshot.png
#   WINDOW=1100,1450 bash scripts/screenshot_report.sh ...     # browser window size (default 1200,2400)
#
# Needs Chromium (Debian: apt-get install chromium). Writes nothing but the PNG; the report must
# exist (alexnet-cifar report RUN, or train --report).
set -euo pipefail
run=${1:?usage: screenshot_report.sh RUN_DIR [OUT.png]}
out=${2:-$run/report-screenshot.png}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "screenshot_report.sh: error: no Chromium found; install it (apt-get install chromium)" >&2; exit 1; }
[ -f "$run/report.html" ] || { echo "screenshot_report.sh: error: $run/report.html is missing; run alexnet-cifar report $run" >&2; exit 1; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# the flags keep a headless browser off the network and quiet (no sync, updates or first-run pages)
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$profile" --hide-scrollbars \
  --window-size=${WINDOW:-1200,2400} --screenshot="$out" "file://$(cd "$run" && pwd)/report.html" 2>/dev/null
echo "screenshot: $out"
