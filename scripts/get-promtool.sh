#!/usr/bin/env bash
# Print the path of promtool: the system's, else Debian's prometheus package extracted into
# the cache (scripts/get-prometheus-tool.sh).
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then command -v promtool; exit 0; fi
exec bash "$(dirname "$0")/get-prometheus-tool.sh" promtool
