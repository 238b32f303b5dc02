#!/usr/bin/env bash
# Install the Debian packages crashfleet needs to build and test, when missing.
# Idempotent and quiet when everything is present; needs root (or sudo) otherwise.
set -euo pipefail

need=()
# liblzo2-dev: python-lzo (LZO-compressed dump pages) builds against it.
# postgresql: initdb/pg_ctl for a throwaway server when none answers on 127.0.0.1:5432.
# debuginfod, libarchive-tools (bsdtar, to index .deb files), binutils (nm): symbol-cache tests.
# chromium, chromium-driver: the web UI's real-browser tests (Selenium drives Debian's build).
# qemu-user-static: runs trixie's arm64 makedumpfile, the oracle of the arm64 fixture dumps.
for pkg in liblzo2-dev gcc postgresql debuginfod libarchive-tools binutils chromium chromium-driver \
           qemu-user-static; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
# python3-dev headers come with the interpreter in most installs; check the header itself.
python3 - <<'PY' || need+=(python3-dev)
import sysconfig, pathlib, sys
sys.exit(0 if (pathlib.Path(sysconfig.get_paths()["include"]) / "Python.h").exists() else 1)
PY

[ ${#need[@]} -eq 0 ] && exit 0
echo "setup-system: installing Debian packages: ${need[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
