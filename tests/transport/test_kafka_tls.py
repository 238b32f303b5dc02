"""Kafka clients over TLS with a private CA (``kafka.ssl_cafile``), and the SASL password
from a credential file.

The local broker, Tansu 0.6, cannot serve TLS itself (its ``--cert`` and ``--key`` options
exclude each other, and with a combined PEM its listener still speaks plaintext) and its
SASL needs a credential store the test stack does not run. So the TLS tests put a small
TLS-terminating relay (Python's ``ssl`` with the test certificates) in front of a Tansu
that advertises the relay's port: the clients speak TLS, verify the certificate and name,
and produce and consume through it. SASL is tested as far as the client settings go."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crashfleet.stack import free_port, kafka_ready, tansu_binary
from foundation.errors import ConfigError
from foundation.settings import KafkaSettings
from ingest.errors import EndpointUnreachable
from ingest.kafka import KafkaAdmin, KafkaConsumer, KafkaProducer, kafka_client_options


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    for s in (src, dst):
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)


class _TlsRelay:
    """TLS on ``port`` -> plaintext to ``target`` (one thread pair per connection)."""

    def __init__(self, port: int, target: int, certs: Path):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(certs / "server.pem", certs / "server.key")
        self.sock = socket.create_server(("127.0.0.1", port))
        self.target = target
        self.stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(raw,), daemon=True).start()

    def _handle(self, raw: socket.socket) -> None:
        try:
            conn = self.ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()  # a client that does not trust us: the handshake fails
            return
        upstream = socket.create_connection(("127.0.0.1", self.target))
        threading.Thread(target=_pipe, args=(conn, upstream), daemon=True).start()
        _pipe(upstream, conn)

    def close(self) -> None:
        self.stop = True
        self.sock.close()


@pytest.fixture(scope="module")
def tls_kafka(certs: Path) -> Iterator[str]:
    try:
        tansu = tansu_binary()
    except Exception as exc:
        pytest.skip(str(exc))
    inner, outer = free_port(), free_port()
    proc = subprocess.Popen([
        tansu, "broker", "--listener-url", f"tcp://127.0.0.1:{inner}",
        "--advertised-listener-url", f"tcp://127.0.0.1:{outer}",
        "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    relay = _TlsRelay(outer, inner, certs)
    try:
        for _ in range(300):
            if kafka_ready(f"127.0.0.1:{inner}", timeout=0.5):
                break
            time.sleep(0.1)
        yield f"127.0.0.1:{outer}"
    finally:
        relay.close()
        proc.terminate()
        proc.wait(timeout=15)


def _opts(bootstrap: str, ca: Path) -> dict[str, object]:
    return kafka_client_options(KafkaSettings(
        bootstrap_servers=(bootstrap,), security_protocol="SSL", ssl_cafile=str(ca),
        request_timeout_s=5.0))


def test_produce_and_consume_over_verified_tls(tls_kafka: str, certs: Path) -> None:
    opts = _opts(tls_kafka, certs / "ca.pem")
    assert opts["ssl_cafile"] == str(certs / "ca.pem") and opts["ssl_check_hostname"] is True
    admin = KafkaAdmin(**opts)  # type: ignore[arg-type]
    admin.ensure_topics({"tls-topic": 1})
    admin.close()
    producer = KafkaProducer(**opts)  # type: ignore[arg-type]
    producer.send("tls-topic", b"over TLS", key=b"k")
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(**opts, group_id="tls", topics=["tls-topic"],  # type: ignore[arg-type]
                             session_timeout_s=6.0)
    got: list[bytes] = []
    for _ in range(30):
        got += [r.value for r in consumer.poll(1.0)]
        if got:
            break
    consumer.close()
    assert got == [b"over TLS"]


def test_the_wrong_ca_is_refused(tls_kafka: str, certs: Path) -> None:
    with pytest.raises(EndpointUnreachable):
        admin = KafkaAdmin(**_opts(tls_kafka, certs / "other-ca.pem"))  # type: ignore[arg-type]
        admin.ensure_topics({"never": 1})


def test_sasl_password_comes_from_a_checked_file(tmp_path: Path) -> None:
    secret = tmp_path / "kafka.pw"
    secret.write_text("scram-secret\n")
    secret.chmod(0o600)
    s = KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                      sasl_username="agent", sasl_password_file=str(secret))
    opts = kafka_client_options(s)
    assert (opts["sasl_mechanism"], opts["sasl_plain_username"], opts["sasl_plain_password"]) \
        == ("SCRAM-SHA-512", "agent", "scram-secret")
    secret.chmod(0o640)
    with pytest.raises(ConfigError, match="mode 0640") as info:
        kafka_client_options(s)
    assert "scram-secret" not in str(info.value)
