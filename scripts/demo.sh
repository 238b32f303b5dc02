#!/usr/bin/env bash
# make demo: the embedded pipeline on the committed real sample dumps.
# Builds a spool with one dump per crashed guest boot, filed under a per-host directory
# (each boot stands for one host), runs 'crashfleet run' on it, prints the cluster table and
# keeps /metrics and the web UI up until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${CRASHFLEET_CACHE:-$HOME/.cache/crashfleet}"
DEMO="$CACHE/demo"
PORT="${CRASHFLEET_DEMO_METRICS_PORT:-9464}"
WEB_PORT="${CRASHFLEET_DEMO_WEB_PORT:-8080}"
rm -rf "$DEMO"
mkdir -p "$DEMO/spool"
.venv/bin/python - "$DEMO/spool" "$CACHE/fixtures" <<'PY'
import json, pathlib, shutil, sys
spool, corpus = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
seen = set()
for manifest in sorted(pathlib.Path("tests/fixtures/dumps").glob("*/manifest.json")):
    m = json.loads(manifest.read_text())
    dump = manifest.parent / m["dump"]
    if not dump.is_file():
        # Not committed: the make-fixtures corpus may hold the same case (from its own boot,
        # which does as demo input). Its manifest names the file: kdump-tools and RHEL
        # layouts put the dump's time in the path.
        own = corpus / manifest.parent.name / "manifest.json"
        if not own.is_file():
            continue
        dump = own.parent / json.loads(own.read_text())["dump"]
        if not dump.is_file():
            continue
    if m["boot"] in seen:
        continue
    seen.add(m["boot"])
    host = spool / f"host-{m['boot']}"
    host.mkdir()
    shutil.copy(dump, host / f"{m['case']}.dump")
print(f"demo: {len(seen)} crashed hosts in {spool}", file=sys.stderr)
PY
# Debian -dbg packages fetched by 'make fixtures' give the deep analysis (ORC unwind, modules
# from memory); without them the demo's analysis is log-based.
if [ -d "$CACHE/debs" ] && [ -z "${CRASHFLEET_SYMBOLS_DEB_DIRS:-}" ]; then
  CRASHFLEET_SYMBOLS_DEB_DIRS="$(find "$CACHE/debs" -mindepth 1 -maxdepth 1 -type d | paste -sd, -)"
  export CRASHFLEET_SYMBOLS_DEB_DIRS
fi
echo "demo: metrics at http://127.0.0.1:$PORT/metrics, web UI at http://127.0.0.1:$WEB_PORT/ (Ctrl-C to stop)" >&2
exec .venv/bin/crashfleet --log-level warning run --spool "$DEMO/spool" --data "$DEMO/data" \
  --metrics-port "$PORT" --web-port "$WEB_PORT"
