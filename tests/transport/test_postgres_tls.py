"""The crash store over TLS to PostgreSQL with ``sslmode = verify-full`` and a private CA,
against a throwaway cluster (``initdb``) started with the test certificates and accepting
only TLS connections with a password (``hostssl … scram-sha-256``); the password comes from
a credential file with a mode check."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from crashfleet.stack import _postgres_bindir, free_port, postgres_ready
from crashfleet.wiring.transport import store_url
from foundation.errors import ConfigError
from foundation.settings import StoreSettings
from store import CrashStore

PASSWORD = "s3cret-pg-\u00e9"


@pytest.fixture(scope="module")
def tls_postgres(certs: Path) -> Iterator[int]:
    bindir = _postgres_bindir()
    if bindir is None:
        pytest.skip("no initdb")
    pgdir = Path(tempfile.mkdtemp(prefix="crashfleet-pgtls-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
    for name in ("server.pem", "server.key"):
        shutil.copy(certs / name, pgdir / name)
        os.chmod(pgdir / name, 0o600)
    if as_user:
        for p in (pgdir, pgdir / "server.pem", pgdir / "server.key"):
            shutil.chown(p, "postgres")
    data = pgdir / "data"
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                    "--auth=trust", "--no-sync", "-E", "UTF8"], check=True,
                   capture_output=True, timeout=120)
    (data / "pg_hba.conf").write_text(
        "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n")
    port = free_port()
    proc = subprocess.Popen([
        *as_user, str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(pgdir),
        "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "ssl=on",
        "-c", f"ssl_cert_file={pgdir / 'server.pem'}", "-c", f"ssl_key_file={pgdir / 'server.key'}",
    ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            if postgres_ready("127.0.0.1", port, timeout=0.5):
                break
            assert proc.poll() is None, "postgres exited"
            subprocess.run(["sleep", "0.2"], check=True)
        with psycopg.connect(host=str(pgdir), port=port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f"ALTER USER postgres PASSWORD '{PASSWORD}'")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(pgdir, ignore_errors=True)


def _password_file(tmp_path: Path, mode: int = 0o600) -> Path:
    p = tmp_path / "pgpass"
    p.write_text(PASSWORD + "\n")
    p.chmod(mode)
    return p


def test_store_over_verified_tls(tls_postgres: int, certs: Path, tmp_path: Path) -> None:
    settings = StoreSettings(
        url=f"postgresql+psycopg://postgres@127.0.0.1:{tls_postgres}/postgres",
        sslmode="verify-full", sslrootcert=str(certs / "ca.pem"),
        password_file=str(_password_file(tmp_path)))
    url = store_url(settings)
    store = CrashStore(url)
    store.migrate()
    assert store.counts()["crashes"] == 0
    store.dispose()
    dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT ssl, version FROM pg_stat_ssl "
                           "WHERE pid = pg_backend_pid()").fetchone()
    assert row is not None and row[0] is True and row[1].startswith("TLS")


def test_the_wrong_ca_and_plaintext_are_refused(tls_postgres: int, certs: Path,
                                                 tmp_path: Path) -> None:
    base = f"postgresql+psycopg://postgres@127.0.0.1:{tls_postgres}/postgres"
    pw = str(_password_file(tmp_path))
    wrong = store_url(StoreSettings(url=base, sslmode="verify-full",
                                    sslrootcert=str(certs / "other-ca.pem"), password_file=pw))
    with pytest.raises(Exception, match="certificate verify failed"):
        CrashStore(wrong).migrate()
    plain = store_url(StoreSettings(url=base, sslmode="disable", password_file=pw))
    with pytest.raises(Exception, match=r"no pg_hba\.conf entry|SSL off"):
        CrashStore(plain).migrate()


def test_a_password_file_others_can_read_is_refused(tmp_path: Path) -> None:
    settings = StoreSettings(url="postgresql+psycopg://u@h/db",
                             password_file=str(_password_file(tmp_path, 0o644)))
    with pytest.raises(ConfigError, match="mode 0644") as info:
        store_url(settings)
    assert PASSWORD not in str(info.value)
