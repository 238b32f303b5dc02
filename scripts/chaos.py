"""The chaos campaign: the real local stack, agents and analyzers as processes, dumps dropped
while faults are injected; counts what was lost, dead-lettered and double-counted, and the
slowest SIGTERM exit. ``make chaos`` runs it and writes the table into docs/reliability.md.

    python scripts/chaos.py [--hosts 4] [--analyzers 2] [--dumps 40] [--faults 12]
                            [--outage-s 20] [--write-docs]

Faults, drawn in turn: SIGKILL or SIGTERM of an agent or an analyzer (then restarted), S3
(SeaweedFS behind a TCP forwarder) down, Kafka (Tansu) frozen with SIGSTOP, PostgreSQL
(behind a forwarder) down. Dumps are the committed real dumps made distinct by an appended
counter, renamed into per-host crash directories while the faults run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from crashfleet.stack import Stack  # noqa: E402
from tests.outage import Outage  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "dumps"
DOC = REPO / "docs" / "reliability.md"
_KINDS = ("sigkill-analyzer", "sigterm-analyzer", "sigkill-agent", "sigterm-agent", "s3-down",
          "kafka-frozen", "postgres-down")


class Fleet:
    """Agent and analyzer processes sharing one environment."""

    def __init__(self, tmp: Path, env: dict[str, str], hosts: int, analyzers: int):
        self.tmp, self.env = tmp, env
        self.agents: list[subprocess.Popen[bytes] | None] = [None] * hosts
        self.analyzers: list[subprocess.Popen[bytes] | None] = [None] * analyzers
        self.exits: list[tuple[str, float]] = []
        self._starts: dict[str, int] = {}
        for i in range(hosts):
            self.start("agent", i)
        for i in range(analyzers):
            self.start("analyzer", i)

    def start(self, kind: str, i: int) -> None:
        env = dict(self.env)
        if kind == "agent":
            host = self.tmp / f"host-{i}"
            (host / "crash").mkdir(parents=True, exist_ok=True)
            env.update({"CRASHFLEET_AGENT_WATCH_DIRS": str(host / "crash"),
                        "CRASHFLEET_AGENT_STATE_DIR": str(host / "state")})
            argv = ["agent"]
        else:
            argv = ["analyzer"]
        name = f"{kind}-{i}.log"
        self._starts[name] = self._starts.get(name, 0) + 1
        log = (self.tmp / name).open("ab")
        proc = subprocess.Popen([sys.executable, "-m", "crashfleet.cli", *argv], env=env,
                                stdout=subprocess.DEVNULL, stderr=log, cwd=REPO)
        (self.agents if kind == "agent" else self.analyzers)[i] = proc

    def wait_ready(self, limit_s: float = 90.0) -> None:
        """Until every process started has logged its start (faults hit running workers)."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if all((self.tmp / name).read_text(errors="replace").count(
                    f'"{name.split("-")[0]}.start"') >= n for name, n in self._starts.items()):
                return
            time.sleep(0.5)

    def signal(self, kind: str, i: int, sig: int) -> None:
        procs = self.agents if kind == "agent" else self.analyzers
        proc = procs[i]
        assert proc is not None
        t0 = time.monotonic()
        proc.send_signal(sig)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if sig == signal.SIGTERM:
            self.exits.append((kind, time.monotonic() - t0))
        self.start(kind, i)

    def stop(self) -> None:
        for kind, procs in (("agent", self.agents), ("analyzer", self.analyzers)):
            for p in procs:
                if p is not None and p.poll() is None:
                    t0 = time.monotonic()
                    p.send_signal(signal.SIGTERM)
                    try:
                        p.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        p.kill()
                    self.exits.append((kind, time.monotonic() - t0))


def _dumps(n: int) -> list[bytes]:
    base = [mf.parent / json.loads(mf.read_text())["dump"]
            for mf in sorted(FIXTURES.glob("*/manifest.json"))]
    data = [p.read_bytes() for p in base if p.is_file()]
    return [data[i % len(data)] + i.to_bytes(8, "big") for i in range(n)]


def _drop(tmp: Path, host: int, i: int, data: bytes) -> None:
    stamp = f"2026120{1 + i // 1000}{i % 1000:04d}"
    final = tmp / f"host-{host}" / "crash" / stamp
    staging = tmp / f"host-{host}" / "staging" / stamp
    staging.mkdir(parents=True)
    (staging / f"dump.{stamp}").write_bytes(data)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.rename(staging, final)  # appears complete, as kdump-tools leaves it


def _env(kafka: str, s3_port: int, store_url: str) -> dict[str, str]:
    """The fleet's environment: S3 and PostgreSQL through their forwarders, short retries."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHFLEET_")}
    env.setdefault("AWS_ACCESS_KEY_ID", "crashfleet-chaos")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "crashfleet-chaos")
    env.update({
        "CRASHFLEET_KAFKA_BOOTSTRAP_SERVERS": kafka,
        "CRASHFLEET_KAFKA_REQUEST_TIMEOUT_S": "5",
        "CRASHFLEET_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
        "CRASHFLEET_S3_BUCKET": "chaos", "CRASHFLEET_S3_ADDRESSING_STYLE": "path",
        "CRASHFLEET_S3_CONNECT_TIMEOUT_S": "2", "CRASHFLEET_S3_READ_TIMEOUT_S": "10",
        "CRASHFLEET_STORE_URL": store_url,
        "CRASHFLEET_AGENT_STABLE_FOR_S": "0.5", "CRASHFLEET_AGENT_REQUIRE_ROOT_OWNER": "false",
        "CRASHFLEET_AGENT_RETRY_INITIAL_S": "0.5", "CRASHFLEET_AGENT_RETRY_MAX_S": "5",
        "CRASHFLEET_AGENT_PART_SIZE_MIB": "5",
        "CRASHFLEET_ANALYZER_METRICS_PORT": "0", "CRASHFLEET_ANALYZER_SESSION_TIMEOUT_S": "6",
        "CRASHFLEET_ANALYZER_RETRY_BACKOFF_S": "0.5",
        "CRASHFLEET_ANALYZER_RETRY_BACKOFF_MAX_S": "5",
        "CRASHFLEET_LOG_FORMAT": "json",
    })
    return env


def _inject(args: argparse.Namespace, tmp: Path, fleet: Fleet, dumps: list[bytes],
            s3: Outage, pg: Outage, tansu: int) -> dict[str, int]:
    """Drop the dumps while injecting ``args.faults`` faults, drawn in turn; counts by kind."""
    rng = random.Random(args.seed)
    faults: dict[str, int] = {}
    per_fault = max(1, len(dumps) // max(1, args.faults))
    dropped = 0
    for f in range(args.faults):
        for _ in range(per_fault):
            if dropped < len(dumps):
                _drop(tmp, rng.randrange(args.hosts), dropped, dumps[dropped])
                dropped += 1
        kind = _KINDS[f % len(_KINDS)]
        faults[kind] = faults.get(kind, 0) + 1
        print(f"fault {f + 1}/{args.faults}: {kind}", flush=True)
        if kind.startswith("sig"):
            sig = signal.SIGKILL if kind.startswith("sigkill") else signal.SIGTERM
            who = kind.split("-")[1]
            n = args.hosts if who == "agent" else args.analyzers
            time.sleep(rng.uniform(0.5, 3.0))  # mid-upload, mid-analysis, mid-store
            fleet.signal(who, rng.randrange(n), sig)
            fleet.wait_ready()
        elif kind == "kafka-frozen":
            os.kill(tansu, signal.SIGSTOP)
            try:
                time.sleep(args.outage_s)
            finally:
                os.kill(tansu, signal.SIGCONT)
        else:
            proxy = s3 if kind == "s3-down" else pg
            with proxy.outage():
                time.sleep(args.outage_s)
    while dropped < len(dumps):
        _drop(tmp, rng.randrange(args.hosts), dropped, dumps[dropped])
        dropped += 1
    return faults


def campaign(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    import psycopg
    import sqlalchemy as sa

    stack = Stack(tmp / "stack", services=("kafka", "s3", "postgres"))
    info = stack.up(timeout=120)
    db = "chaos_" + uuid.uuid4().hex[:10]
    with psycopg.connect(info.postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    s3u, pgu = urlsplit(info.s3_endpoint), urlsplit(info.postgres_dsn)
    s3 = Outage(s3u.hostname or "127.0.0.1", s3u.port or 80)
    pg = Outage(pgu.hostname or "127.0.0.1", pgu.port or 5432)
    user = pgu.netloc.rsplit("@", 1)[0] + "@" if "@" in pgu.netloc else ""
    store_url = f"postgresql+psycopg://{user}127.0.0.1:{pg.port}/{db}"
    tansu = next(p.pid for p in info.processes if p.name == "kafka")
    env = _env(info.kafka_bootstrap, s3.port, store_url)
    from ingest.s3 import S3ObjectStore

    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
    S3ObjectStore("chaos", endpoint_url=info.s3_endpoint, addressing_style="path").ensure_bucket()
    dumps = _dumps(args.dumps)
    fleet = Fleet(tmp, env, args.hosts, args.analyzers)
    engine = sa.create_engine(store_url.replace(f"127.0.0.1:{pg.port}",
                                                f"{pgu.hostname}:{pgu.port}"))
    try:
        fleet.wait_ready()
        faults = _inject(args, tmp, fleet, dumps, s3, pg, tansu)

        def counts() -> tuple[int, int, int]:
            with engine.connect() as conn:
                try:
                    return tuple(int(conn.execute(sa.text(q)).scalar_one() or 0) for q in (
                        "SELECT count(*) FROM crashes", "SELECT count(*) FROM failures",
                        "SELECT coalesce(sum(count), 0) FROM clusters"))  # type: ignore[return-value]
                except sa.exc.SQLAlchemyError:
                    return (0, 0, 0)

        deadline = time.monotonic() + args.settle_s
        while time.monotonic() < deadline and sum(counts()[:2]) < len(dumps):
            time.sleep(2)
        fleet.stop()
        stored, dead, counted = counts()
    finally:
        for p in [*fleet.agents, *fleet.analyzers]:
            if p is not None and p.poll() is None:
                p.kill()
        s3.close()
        pg.close()
        engine.dispose()
        with psycopg.connect(info.postgres_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        stack.down()
    distinct = {hashlib.sha256(d).hexdigest() for d in dumps}
    slowest = max((s for _, s in fleet.exits), default=0.0)
    return {"dropped": len(distinct), "stored": stored, "dead_lettered": dead,
            "lost": len(distinct) - stored - dead, "double_counted": counted - stored,
            "faults": faults, "sigterm_exits": len(fleet.exits),
            "slowest_sigterm_s": round(slowest, 1)}


def _table(args: argparse.Namespace, r: dict[str, object]) -> str:
    faults = r["faults"]
    assert isinstance(faults, dict)
    lines = [
        f"`make chaos` (`python scripts/chaos.py --hosts {args.hosts} --analyzers "
        f"{args.analyzers} --dumps {args.dumps} --faults {args.faults} --outage-s "
        f"{args.outage_s} --write-docs`), on {os.cpu_count()} cores; one run.", "",
        "| measure | result |", "| --- | --- |",
        f"| hosts (agents) / analyzers | {args.hosts} / {args.analyzers} |",
        f"| faults injected | {sum(faults.values())}: "
        + ", ".join(f"{k} {v}" for k, v in sorted(faults.items())) + " |",
        f"| dumps dropped (distinct) | {r['dropped']} |",
        f"| stored | {r['stored']} |",
        f"| dead-lettered | {r['dead_lettered']} |",
        f"| lost | {r['lost']} |",
        f"| double-counted (cluster counts minus crash rows) | {r['double_counted']} |",
        f"| SIGTERM exits measured / slowest | {r['sigterm_exits']} / "
        f"{r['slowest_sigterm_s']} s |",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--analyzers", type=int, default=2)
    ap.add_argument("--dumps", type=int, default=40)
    ap.add_argument("--faults", type=int, default=12)
    ap.add_argument("--outage-s", type=float, default=20.0)
    ap.add_argument("--settle-s", type=float, default=300.0)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cf-chaos-") as t:
        result = campaign(args, Path(t))
        if os.environ.get("CRASHFLEET_CHAOS_KEEP"):
            shutil.copytree(t, os.environ["CRASHFLEET_CHAOS_KEEP"], dirs_exist_ok=True)
    text = _table(args, result)
    print(text)
    if args.write_docs:
        doc = DOC.read_text()
        section = f"## Chaos campaign\n\n{text}\n"
        marker = "## Chaos campaign\n"
        if marker in doc:
            head, _, tail = doc.partition(marker)
            rest = tail.split("\n## ", 1)
            doc = head + section + ("\n## " + rest[1] if len(rest) > 1 else "")
        else:
            doc = doc.rstrip("\n") + "\n\n" + section
        DOC.write_text(doc)
    ok = result["lost"] == 0 and result["double_counted"] == 0 \
        and float(result["slowest_sigterm_s"]) <= 10.0  # type: ignore[arg-type]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
