"""The chaos campaign: the real local stack, agents and analyzers as processes, dumps dropped
while faults are injected; counts what was lost, dead-lettered and double-counted, and the
slowest SIGTERM exit. ``make chaos`` runs it and writes the table into docs/reliability.md.

    python scripts/chaos.py [--hosts 4] [--analyzers 2] [--dumps 40] [--faults 12]
                            [--outage-s 20] [--write-docs]

Faults, drawn in turn: SIGKILL or SIGTERM of an agent or an analyzer (then restarted), S3
(SeaweedFS behind a TCP forwarder) down, Kafka (Tansu) frozen with SIGSTOP, PostgreSQL
(behind a forwarder) down, an agent's state directory on a full disk (each agent's state
directory is a small tmpfs of its own, filled to the last byte for ``--disk-full-s``), and a
dump truncated or rewritten in place while its agent ships it (changed just after the agent
logs its detection). Dumps are the committed real dumps made distinct by an appended counter,
renamed into per-host crash directories while the faults run.

Each agent runs as a host of its own (hostname and machine id in private namespaces, when
root), so that events spread over the partitions as a fleet's do.
Every dump is accounted for by its identity (the SHA-256 of its final bytes, which names its
object and its event): stored, dead-lettered, or lost; a dump changed while shipping counts
once, by its final version (its first version, if it was complete and shipped before the
change, is counted apart; anything else stored is "unexpected").
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
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from crashfleet.stack import Stack  # noqa: E402
from tests.outage import Outage  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "dumps"
DOC = REPO / "docs" / "reliability.md"
_KINDS = ("sigkill-analyzer", "sigterm-analyzer", "sigkill-agent", "sigterm-agent", "s3-down",
          "kafka-frozen", "postgres-down", "agent-disk-full", "dump-rewritten")
_STATE_FS_BYTES = 16 * 1024 * 1024  # each agent's state tmpfs (its journal needs far less)


class Fleet:
    """Agent and analyzer processes sharing one environment."""

    def __init__(self, tmp: Path, env: dict[str, str], hosts: int, analyzers: int):
        self.tmp, self.env = tmp, env
        self.agents: list[subprocess.Popen[bytes] | None] = [None] * hosts
        self.analyzers: list[subprocess.Popen[bytes] | None] = [None] * analyzers
        self.exits: list[tuple[str, float]] = []
        self._starts: dict[str, int] = {}
        self.mounts: list[Path] = []
        self._unshare: bool | None = None
        for i in range(hosts):
            self._state_fs(tmp / f"host-{i}" / "state")
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
            argv = [*self._identity(i), sys.executable, "-m", "crashfleet.cli", "agent"]
        else:
            argv = [sys.executable, "-m", "crashfleet.cli", "analyzer"]
        name = f"{kind}-{i}.log"
        self._starts[name] = self._starts.get(name, 0) + 1
        log = (self.tmp / name).open("ab")
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log, cwd=REPO)
        (self.agents if kind == "agent" else self.analyzers)[i] = proc

    def _identity(self, i: int) -> list[str]:
        """A command prefix giving agent ``i`` a host of its own — hostname and
        /etc/machine-id, in private UTS and mount namespaces (root) — so that its events are
        keyed, and spread over the partitions, as a fleet's are; [] when that cannot be done."""
        if self._unshare is None:
            self._unshare = subprocess.run(["unshare", "--mount", "--uts", "true"],
                                           capture_output=True).returncode == 0 \
                and Path("/etc/machine-id").is_file()
        if not self._unshare:
            return []
        mid = self.tmp / f"host-{i}" / "machine-id"
        mid.write_text(hashlib.md5(f"chaos-host-{i}".encode()).hexdigest() + "\n")
        return ["unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c",
                'mount --bind "$1" /etc/machine-id && hostname "$2" && shift 2 && exec "$@"',
                "sh", str(mid), f"chaos-host-{i}"]

    def _state_fs(self, state: Path) -> None:
        """The agent's state directory on a tmpfs of its own, so that it can be filled (needs
        root; without it the directory stays on the disk and cannot be filled)."""
        state.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={_STATE_FS_BYTES},mode=0700",
                               "tmpfs", str(state)], capture_output=True)
        if done.returncode == 0:
            self.mounts.append(state)

    def unmount(self) -> None:
        for m in self.mounts:
            subprocess.run(["umount", "-l", str(m)], capture_output=True)
        self.mounts.clear()

    def wait_ready(self, limit_s: float = 90.0) -> None:
        """Until every process started has logged its start (faults hit running workers)."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if all((self.tmp / name).read_text(errors="replace").count(
                    f'"{name.split("-")[0]}.start"') >= n for name, n in self._starts.items()):
                return
            time.sleep(0.5)

    def forget_start(self, kind: str, i: int) -> None:
        """A start that failed before logging its start (``wait_ready`` must not wait for
        it)."""
        self._starts[f"{kind}-{i}.log"] -= 1

    def signal(self, kind: str, i: int, sig: int, *, restart: bool = True) -> None:
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
        if restart:
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


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Ledger:
    """Every dump dropped: where, and the SHA-256 of its final bytes (which names its object
    and its event); for a dump changed while shipping, also of its first version."""

    def __init__(self, tmp: Path, dumps: list[bytes]):
        self.tmp, self.dumps = tmp, dumps
        self.final: list[str] = []
        self.paths: list[Path] = []
        self.first: dict[int, str] = {}  # dump number -> SHA-256 before it was changed
        self.changes: dict[str, int] = {}  # "truncated" / "rewritten" -> how many

    @property
    def dropped(self) -> int:
        return len(self.final)

    def drop(self, host: int) -> Path:
        """Drop the next dump into ``host``'s crash directory, complete at once (renamed in,
        as kdump-tools leaves it); its file's path."""
        i = len(self.final)
        stamp = f"2026120{1 + i // 1000}{i % 1000:04d}"
        final = self.tmp / f"host-{host}" / "crash" / stamp
        staging = self.tmp / f"host-{host}" / "staging" / stamp
        staging.mkdir(parents=True)
        (staging / f"dump.{stamp}").write_bytes(self.dumps[i])
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging, final)
        self.final.append(_sha(self.dumps[i]))
        self.paths.append(final / f"dump.{stamp}")
        return self.paths[-1]

    def change(self, i: int, how: str) -> None:
        """Truncate dump ``i`` to about half its size, or rewrite its last 8 bytes in place."""
        path = self.paths[i]
        if how == "truncated":  # at a length of its own: two truncated copies never match
            os.truncate(path, path.stat().st_size // 2 + i)
        else:
            with path.open("r+b") as f:
                f.seek(-8, os.SEEK_END)
                f.write((1_000_000 + i).to_bytes(8, "big"))
        self.first[i] = self.final[i]
        self.final[i] = _sha(path.read_bytes())
        self.changes[how] = self.changes.get(how, 0) + 1


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


def _after_detection(tmp: Path, host: int, path: Path, since: int, limit_s: float = 30.0) -> bool:
    """Wait until ``host``'s agent logs the detection of ``path`` (its log read from byte
    ``since``); False if it did not within ``limit_s``."""
    log = tmp / f"agent-{host}.log"
    needle = path.parent.name.encode()
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        with log.open("rb") as f:
            f.seek(since)
            if any(b'"dump.detected"' in ln and needle in ln for ln in f.read().splitlines()):
                return True
        time.sleep(0.005)
    return False


def _rewrite_while_shipping(args: argparse.Namespace, tmp: Path, ledger: Ledger,
                            rng: random.Random) -> None:
    """Drop a dump, and truncate or rewrite it just after its agent has detected it (while it
    is hashed and uploaded, or just before)."""
    host = rng.randrange(args.hosts)
    log = tmp / f"agent-{host}.log"
    since = log.stat().st_size if log.exists() else 0
    i = ledger.dropped
    path = ledger.drop(host)
    if not _after_detection(tmp, host, path, since):
        print(f"  dump {i} was not detected within 30 s; changed anyway", flush=True)
    time.sleep(rng.uniform(0.0, 0.2))
    ledger.change(i, rng.choice(("truncated", "rewritten")))


def _fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` to its last byte; the filler's path."""
    filler = directory / ".chaos-filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (1 << 20, 1 << 12, 1):
            block = b"\0" * chunk
            try:
                while True:
                    os.write(fd, block)
            except OSError:
                continue  # ENOSPC: on with smaller writes
    finally:
        os.close(fd)
    return filler


def _disk_full(args: argparse.Namespace, fleet: Fleet, ledger: Ledger, rng: random.Random,
               stats: dict[str, int]) -> None:
    """An agent's state directory on a full disk for ``args.disk_full_s``: a dump arrives
    meanwhile, the agent is stopped and started on the full disk, then space comes back."""
    host = rng.randrange(args.hosts)
    state = fleet.tmp / f"host-{host}" / "state"
    if state not in fleet.mounts:
        print("  no tmpfs for the state directory (not root?): skipped", flush=True)
        stats["skipped"] = stats.get("skipped", 0) + 1
        return
    filler = _fill(state)
    try:
        ledger.drop(host)
        time.sleep(args.disk_full_s / 2)
        fleet.signal("agent", host, signal.SIGTERM, restart=False)
        fleet.start("agent", host)
        time.sleep(args.disk_full_s / 2)
    finally:
        filler.unlink()
    proc = fleet.agents[host]
    if proc is not None and proc.poll() is not None:
        # It could not open its journal on the full disk (one line, exit status 2).
        stats["refused_start"] = stats.get("refused_start", 0) + 1
        fleet.forget_start("agent", host)
        fleet.start("agent", host)
    fleet.wait_ready()


def _inject(args: argparse.Namespace, fleet: Fleet, ledger: Ledger, s3: Outage, pg: Outage,
            tansu: int) -> tuple[dict[str, int], dict[str, int]]:
    """Drop the dumps while injecting ``args.faults`` faults, drawn in turn: (faults by kind,
    what the disk-full faults met)."""
    rng = random.Random(args.seed)
    faults: dict[str, int] = {}
    disk: dict[str, int] = {}
    per_fault = max(1, len(ledger.dumps) // max(1, args.faults))
    for f in range(args.faults):
        kind = _KINDS[f % len(_KINDS)]
        # The dump-bringing faults drop one of this fault's share themselves.
        own = 1 if kind in ("dump-rewritten", "agent-disk-full") else 0
        for _ in range(per_fault - own):
            if ledger.dropped < len(ledger.dumps) - own:
                ledger.drop(rng.randrange(args.hosts))
        faults[kind] = faults.get(kind, 0) + 1
        print(f"fault {f + 1}/{args.faults}: {kind}", flush=True)
        if own and ledger.dropped >= len(ledger.dumps):
            print("  no dump left to bring: skipped", flush=True)
            faults[kind] -= 1
        elif kind == "dump-rewritten":
            _rewrite_while_shipping(args, fleet.tmp, ledger, rng)
        elif kind == "agent-disk-full":
            _disk_full(args, fleet, ledger, rng, disk)
        elif kind.startswith("sig"):
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
    while ledger.dropped < len(ledger.dumps):
        ledger.drop(rng.randrange(args.hosts))
    return faults, disk


def _tally(engine: Any, ledger: Ledger) -> dict[str, int] | None:
    """Every dump accounted for by its identity; None while the store does not answer."""
    import sqlalchemy as sa

    from ingest.events import crash_event_id

    try:
        with engine.connect() as conn:
            keys = [k for (k,) in conn.execute(sa.text("SELECT dump_key FROM crashes"))]
            dead = {e for (e,) in conn.execute(sa.text(
                "SELECT event_id FROM failures WHERE dead_lettered"))}
            counted = int(conn.execute(sa.text(
                "SELECT coalesce(sum(count), 0) FROM clusters")).scalar_one())
    except sa.exc.SQLAlchemyError:
        return None
    stored = {str(k).rsplit("/", 1)[-1] for k in keys if k}
    final, first = set(ledger.final), set(ledger.first.values()) - set(ledger.final)
    dead_final = {h for h in final - stored if crash_event_id(h) in dead}
    return {"dropped": len(final), "stored": len(final & stored), "dead_lettered": len(dead_final),
            "lost": len(final - stored - dead_final),
            "first_versions_shipped": len(first & stored),
            "unexpected": len(stored - final - first),
            # a dump stored twice, or a cluster counting a crash it has not (or twice)
            "double_counted": (len(keys) - len(stored)) + (counted - len(keys))}


def _stack(tmp: Path) -> tuple[Stack, Any, str, Outage, Outage, str, int]:
    """The real stack, a fresh database, forwarders in front of S3 and PostgreSQL: (stack,
    its info, the admin DSN's database name, S3 and PostgreSQL forwarders, the fleet's store
    URL, Tansu's pid)."""
    import psycopg

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
    return stack, info, db, s3, pg, store_url, tansu


def campaign(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    import psycopg
    import sqlalchemy as sa

    stack, info, db, s3, pg, store_url, tansu = _stack(tmp)
    env = _env(info.kafka_bootstrap, s3.port, store_url)
    from ingest.s3 import S3ObjectStore

    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
    S3ObjectStore("chaos", endpoint_url=info.s3_endpoint, addressing_style="path").ensure_bucket()
    ledger = Ledger(tmp, _dumps(args.dumps))
    fleet = Fleet(tmp, env, args.hosts, args.analyzers)
    pgu = urlsplit(info.postgres_dsn)
    engine = sa.create_engine(store_url.replace(f"127.0.0.1:{pg.port}",
                                                f"{pgu.hostname}:{pgu.port}"))
    try:
        fleet.wait_ready()
        faults, disk = _inject(args, fleet, ledger, s3, pg, tansu)
        deadline = time.monotonic() + args.settle_s
        while time.monotonic() < deadline:
            t = _tally(engine, ledger)
            if t is not None and t["lost"] == 0:
                break
            time.sleep(2)
        fleet.stop()
        tally = None
        while tally is None:
            tally = _tally(engine, ledger)
    finally:
        for p in [*fleet.agents, *fleet.analyzers]:
            if p is not None and p.poll() is None:
                p.kill()
        fleet.unmount()
        s3.close()
        pg.close()
        engine.dispose()
        with psycopg.connect(info.postgres_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        stack.down()
    slowest = max((s for _, s in fleet.exits), default=0.0)
    return {**tally, "faults": faults, "disk_full": disk, "changed": dict(ledger.changes),
            "sigterm_exits": len(fleet.exits), "slowest_sigterm_s": round(slowest, 1)}


def _table(args: argparse.Namespace, r: dict[str, object]) -> str:
    faults, changed, disk = r["faults"], r["changed"], r["disk_full"]
    assert isinstance(faults, dict) and isinstance(changed, dict) and isinstance(disk, dict)
    lines = [
        f"`make chaos` (`python scripts/chaos.py --hosts {args.hosts} --analyzers "
        f"{args.analyzers} --dumps {args.dumps} --faults {args.faults} --outage-s "
        f"{args.outage_s} --disk-full-s {args.disk_full_s} --write-docs`), on "
        f"{os.cpu_count()} cores; one run.", "",
        "| measure | result |", "| --- | --- |",
        f"| hosts (agents) / analyzers | {args.hosts} / {args.analyzers} |",
        f"| faults injected | {sum(faults.values())}: "
        + ", ".join(f"{k} {v}" for k, v in sorted(faults.items())) + " |",
        f"| dumps dropped (distinct) | {r['dropped']} |",
        f"| of which truncated / rewritten while shipping | {changed.get('truncated', 0)} / "
        f"{changed.get('rewritten', 0)} (first version complete and shipped before the "
        f"change: {r['first_versions_shipped']}) |",
        f"| agent starts refused on a full state disk (one line, exit 2) | "
        f"{disk.get('refused_start', 0)} |",
        f"| stored (by dump identity) | {r['stored']} |",
        f"| dead-lettered | {r['dead_lettered']} |",
        f"| lost | {r['lost']} |",
        f"| stored but never dropped | {r['unexpected']} |",
        f"| double-counted (dumps stored twice + cluster counts minus crash rows) | "
        f"{r['double_counted']} |",
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
    ap.add_argument("--disk-full-s", type=float, default=20.0)
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
    ok = result["lost"] == 0 and result["double_counted"] == 0 and result["unexpected"] == 0 \
        and float(result["slowest_sigterm_s"]) <= 10.0  # type: ignore[arg-type]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
