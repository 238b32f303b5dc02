#!/usr/bin/env bash
# Print the path of a Prometheus tool from Debian's packages, fetching and extracting the
# package into the cache when needed (never installed: no service is started).
#   get-prometheus-tool.sh promtool|prometheus|alertmanager
set -euo pipefail
tool="${1:?usage: get-prometheus-tool.sh promtool|prometheus|alertmanager}"
case "$tool" in
  promtool|prometheus) pkg=prometheus; bin=$tool ;;
  alertmanager) pkg=prometheus-alertmanager; bin=prometheus-alertmanager ;;
  *) echo "unknown tool $tool" >&2; exit 2 ;;
esac
CACHE="${CRASHFLEET_CACHE:-$HOME/.cache/crashfleet}"
DEST="$CACHE/tools/$pkg"
if [ ! -x "$DEST/usr/bin/$bin" ]; then
  mkdir -p "$DEST.tmp"
  (cd "$DEST.tmp" && apt-get -o DPkg::Lock::Timeout=600 download "$pkg" >/dev/null 2>&1) || {
    apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
    (cd "$DEST.tmp" && apt-get download "$pkg" >/dev/null)
  }
  dpkg-deb -x "$DEST.tmp"/"$pkg"_*.deb "$DEST.tmp/root"
  rm -rf "$DEST"
  mv "$DEST.tmp/root" "$DEST"
  rm -rf "$DEST.tmp"
fi
echo "$DEST/usr/bin/$bin"
