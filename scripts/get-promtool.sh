#!/usr/bin/env bash
# Print the path of promtool (from Debian's prometheus package), fetching it into the cache
# when needed. The package is extracted, not installed: no Prometheus service is started.
set -euo pipefail
CACHE="${CRASHFLEET_CACHE:-$HOME/.cache/crashfleet}"
DEST="$CACHE/tools/prometheus"
if command -v promtool >/dev/null 2>&1; then command -v promtool; exit 0; fi
if [ ! -x "$DEST/usr/bin/promtool" ]; then
  mkdir -p "$DEST.tmp"
  (cd "$DEST.tmp" && apt-get -o DPkg::Lock::Timeout=600 download prometheus >/dev/null 2>&1) || {
    apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
    (cd "$DEST.tmp" && apt-get download prometheus >/dev/null)
  }
  dpkg-deb -x "$DEST.tmp"/prometheus_*.deb "$DEST.tmp/root"
  rm -rf "$DEST"
  mv "$DEST.tmp/root" "$DEST"
  rm -rf "$DEST.tmp"
fi
echo "$DEST/usr/bin/promtool"
