"""bench/agent: the agent's upload throughput and memory beside boto3's upload_file, in one run.

    python -m bench.agent.run [--size-mib 2048] [--rounds 3] [--write-docs]

Starts its own SeaweedFS (S3) and Tansu (Kafka) on loopback, writes a dump-sized file, then
uploads it, alternately for a few rounds, (1) with boto3's ``upload_file`` (its default
TransferConfig: 8 MiB parts, 10 threads) and (2) with ``crashfleet agent --once``, each in a
fresh process whose peak RSS is
the kernel's high-water mark (``VmHWM`` of /proc/self/status, read at its end). Also
measures detection latency: from the rename of ``dump-incomplete`` to ``dump.<STAMP>`` to
the agent's ``dump.detected`` log line, with the agent running as a service.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.docs import write_section
from crashfleet.stack import Stack

MIB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]


def _write_file(path: Path, size: int) -> None:
    block = os.urandom(64 * MIB)
    with path.open("wb") as fh:
        written = 0
        i = 0
        while written < size:
            chunk = (i.to_bytes(8, "big") + block)[: min(64 * MIB, size - written)]
            fh.write(chunk)
            written += len(chunk)
            i += 1


_BOTO = """
import sys, boto3, time
from boto3.s3.transfer import TransferConfig
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
t0 = time.monotonic()
s3.upload_file(sys.argv[2], sys.argv[3], "boto3/" + sys.argv[4], Config=TransferConfig())
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:")][0].split()[1]
print(time.monotonic() - t0, hwm)
"""

_AGENT = """
import sys, time
from crashfleet.cli import main
t0 = time.monotonic()
rc = main(sys.argv[1:])
# VmHWM, not ru_maxrss: ru_maxrss carries the parent's high-water mark across fork+exec.
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:")][0].split()[1]
print(time.monotonic() - t0, hwm)
sys.exit(rc)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--part-size-mib", type=int, help="agent.part_size_mib (default: setting)")
    ap.add_argument("--concurrency", type=int, help="agent.upload_concurrency")
    ap.add_argument("--rounds", type=int, default=3, help="alternating runs of each uploader")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    size = args.size_mib * MIB
    with tempfile.TemporaryDirectory(prefix="cf-bench-agent-") as tmp_s:
        tmp = Path(tmp_s)
        stack = Stack(tmp / "stack", services=("kafka", "s3"))
        info = stack.up()
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHFLEET_")}
            env.setdefault("AWS_ACCESS_KEY_ID", "bench")
            env.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
            env.update({
                "CRASHFLEET_KAFKA_BOOTSTRAP_SERVERS": info.kafka_bootstrap,
                "CRASHFLEET_S3_ENDPOINT_URL": info.s3_endpoint,
                "CRASHFLEET_S3_BUCKET": "bench",
                "CRASHFLEET_S3_ADDRESSING_STYLE": "path",
                "CRASHFLEET_AGENT_WATCH_DIRS": str(tmp / "crash"),
                "CRASHFLEET_AGENT_STATE_DIR": str(tmp / "state"),
                "CRASHFLEET_AGENT_STABLE_FOR_S": "0",
                "CRASHFLEET_LOG_FORMAT": "json",
            })
            if args.part_size_mib:
                env["CRASHFLEET_AGENT_PART_SIZE_MIB"] = str(args.part_size_mib)
            if args.concurrency:
                env["CRASHFLEET_AGENT_UPLOAD_CONCURRENCY"] = str(args.concurrency)
            import boto3

            boto3.client("s3", endpoint_url=info.s3_endpoint, region_name="us-east-1",
                         aws_access_key_id="bench", aws_secret_access_key="bench"
                         ).create_bucket(Bucket="bench")
            d = tmp / "crash" / "202611251200"
            d.mkdir(parents=True)
            dump = d / "dump.202611251200"
            _write_file(dump, size)

            # Alternate the two uploaders for a few rounds and keep medians: one run of each
            # swings by 10% on a 2-core machine that also runs the S3 server.
            boto_runs: list[tuple[float, int]] = []
            agent_runs: list[tuple[float, float, int]] = []
            for r in range(args.rounds):
                out = subprocess.run([sys.executable, "-c", _BOTO, info.s3_endpoint, str(dump),
                                      "bench", f"x{r}"], env=env, capture_output=True,
                                     text=True, check=True, timeout=3600).stdout.split()
                boto_runs.append((float(out[0]), int(out[1])))
                # A fresh journal and key prefix each round: the same file is shipped anew.
                round_env = {**env, "CRASHFLEET_AGENT_STATE_DIR": str(tmp / f"state{r}"),
                             "CRASHFLEET_AGENT_DUMPS_PREFIX": f"dumps{r}/"}
                proc = subprocess.run([sys.executable, "-c", _AGENT, "agent", "--once"],
                                      env=round_env, capture_output=True, text=True,
                                      timeout=3600)
                if proc.returncode != 0:
                    raise SystemExit(proc.stderr[-3000:])
                total_s, rss = (float(v) for v in proc.stdout.split()[-2:])
                up = next(json.loads(ln) for ln in proc.stderr.splitlines()
                          if '"dump.uploaded"' in ln)
                # The upload alone: the header read and the SHA-256 pass that names the object
                # come before it (``header_and_hash_seconds``).
                agent_runs.append((float(up["seconds"]), total_s, int(rss)))
            boto_s = statistics.median(b[0] for b in boto_runs)
            boto_rss = max(b[1] for b in boto_runs)
            agent_s = statistics.median(a[0] for a in agent_runs)
            agent_total_s = statistics.median(a[1] for a in agent_runs)
            agent_rss = max(a[2] for a in agent_runs)

            latency = _detection_latency(tmp, env)
        finally:
            stack.down()
    mibs = size / MIB
    rows = [
        ("boto3 upload_file (8 MiB x 10 threads)", boto_s, mibs / boto_s, boto_rss / 1024),
        ("crashfleet agent: upload", agent_s, mibs / agent_s, agent_rss / 1024),
        ("crashfleet agent --once: whole run (start-up, scan, hash, upload, event)",
         agent_total_s,
         mibs / agent_total_s, agent_rss / 1024),
    ]
    lines = [f"Dump of {args.size_mib} MiB to SeaweedFS on loopback, 2 cores; median of "
             f"{args.rounds} alternating runs of each (peak RSS: the highest).", "",
             "| uploader | seconds | MiB/s | peak RSS MiB |", "| --- | --- | --- | --- |"]
    lines += [f"| {n} | {s:.1f} | {r:.0f} | {m:.0f} |" for n, s, r, m in rows]
    lines += ["", f"Throughput ratio agent/boto3: upload {boto_s / agent_s:.2f} (target at least "
              f"0.9), whole run {boto_s / agent_total_s:.2f} (it also hashes the file first: the "
              "key is the SHA-256); "
              f"agent peak RSS {agent_rss / 1024:.0f} MiB (target at most 80; boto3's "
              f"upload_file {boto_rss / 1024:.0f}).",
              f"Detection latency, rename to dump.detected: {latency * 1000:.0f} ms "
              "(inotify wake-up)."]
    text = "\n".join(lines)
    print(text)
    if args.write_docs:
        write_section("Agent", f"`python -m bench.agent.run --write-docs`\n\n{text}")
    return 0


def _detection_latency(tmp: Path, env: dict[str, str]) -> float:
    root = tmp / "crash2"
    (root / "202611251300").mkdir(parents=True)
    env = {**env, "CRASHFLEET_AGENT_WATCH_DIRS": str(root),
           "CRASHFLEET_AGENT_STATE_DIR": str(tmp / "state2")}
    log_path = tmp / "agent2.log"
    with log_path.open("w") as log_fh:
        # A file, not a pipe: an unread pipe would block the agent once it fills.
        proc = subprocess.Popen([sys.executable, "-m", "crashfleet.cli", "agent"], env=env,
                                stderr=log_fh)
    try:
        time.sleep(3)  # started and idle
        inc = root / "202611251300" / "dump-incomplete"
        inc.write_bytes(os.urandom(MIB))
        t0 = time.time()
        os.rename(inc, root / "202611251300" / "dump.202611251300")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for line in log_path.read_text().splitlines():
                if '"dump.detected"' in line:
                    from datetime import datetime

                    ts = json.loads(line)["timestamp"]
                    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() - t0
            time.sleep(0.01)
        raise SystemExit("agent never reported the dump")
    finally:
        proc.terminate()
        proc.wait(60)


if __name__ == "__main__":
    sys.exit(main())
