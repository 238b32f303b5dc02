#!/usr/bin/env bash
# Run Debian's Alertmanager extracted into the cache (scripts/get-prometheus-tool.sh), with
# its arguments. Debian's build reads its default notification templates from the fixed path
# /usr/share/prometheus/alertmanager; the package is not installed, so the extracted
# /usr/share is overlaid on the real one in a private mount namespace of this process only
# (needs root, as the test suite runs): nothing on the system changes.
set -euo pipefail
bin=$(bash "$(dirname "$0")/get-prometheus-tool.sh" alertmanager)
root=${bin%/usr/bin/prometheus-alertmanager}
if [ -f /usr/share/prometheus/alertmanager/default.tmpl ]; then exec "$bin" "$@"; fi
exec unshare --mount --propagation private sh -c '
  mount -t overlay overlay -o "lowerdir=$1/usr/share:/usr/share" /usr/share || exit 3
  shift; exec "$@"' sh "$root" "$bin" "$@"
