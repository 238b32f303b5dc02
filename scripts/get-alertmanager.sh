#!/usr/bin/env bash
# Print the path of Alertmanager (from Debian's prometheus-alertmanager package), fetching it
# into the cache when needed. Extracted, not installed: no service is started.
set -euo pipefail
CACHE="${CRASHFLEET_CACHE:-$HOME/.cache/crashfleet}"
DEST="$CACHE/tools/prometheus-alertmanager"
if [ ! -x "$DEST/usr/bin/prometheus-alertmanager" ]; then
  mkdir -p "$DEST.tmp"
  (cd "$DEST.tmp" && apt-get -o DPkg::Lock::Timeout=600 download prometheus-alertmanager \
      >/dev/null 2>&1) || {
    apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
    (cd "$DEST.tmp" && apt-get download prometheus-alertmanager >/dev/null)
  }
  dpkg-deb -x "$DEST.tmp"/prometheus-alertmanager_*.deb "$DEST.tmp/root"
  rm -rf "$DEST"
  mv "$DEST.tmp/root" "$DEST"
  rm -rf "$DEST.tmp"
fi
echo "$DEST/usr/bin/prometheus-alertmanager"
