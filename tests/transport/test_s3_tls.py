"""The object store over TLS to SeaweedFS's S3 gateway started with the test certificates
(``-s3.cert.file``/``-s3.key.file``), trusted through ``s3.ca_bundle``; without the private
CA (or with the wrong one) the certificate is refused."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from crashfleet.stack import _free_ports, weed_binary
from foundation.settings import S3Settings
from ingest.errors import EndpointUnreachable
from ingest.s3 import S3ObjectStore


def _answers(url: str, ca: Path) -> bool:
    ctx = ssl.create_default_context(cafile=str(ca))
    try:
        urllib.request.urlopen(url, timeout=1, context=ctx)
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def tls_s3(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        weed = weed_binary()
    except Exception as exc:
        pytest.skip(str(exc))
    data = tmp_path_factory.mktemp("weedtls")
    ports = _free_ports(8)
    argv = [
        weed, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={ports[0]}", f"-master.port.grpc={ports[1]}",
        f"-volume.port={ports[2]}", f"-volume.port.grpc={ports[3]}",
        f"-filer.port={ports[4]}", f"-filer.port.grpc={ports[5]}",
        f"-filer.localSocket={data}/filer.sock",
        "-s3", f"-s3.port={ports[7]}", f"-s3.port.grpc={ports[6]}",
        "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.volumeSizeLimitMB=64",
        "-volume.max=0", "-master.telemetry=false",
        f"-s3.cert.file={certs / 'server.pem'}", f"-s3.key.file={certs / 'server.key'}",
    ]
    log = (data / "weed.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=data)
    endpoint = f"https://127.0.0.1:{ports[7]}"
    try:
        for _ in range(600):
            if _answers(endpoint + "/", certs / "ca.pem"):
                break
            assert proc.poll() is None, (data / "weed.log").read_text()[-2000:]
            subprocess.run(["sleep", "0.2"], check=True)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(data, ignore_errors=True)


def _store(endpoint: str, ca: str) -> S3ObjectStore:
    s = S3Settings(endpoint_url=endpoint, bucket="tls-bucket", addressing_style="path",
                   ca_bundle=ca, connect_timeout_s=2.0, max_attempts=1)
    return S3ObjectStore.from_settings(s)


def test_put_and_get_over_tls_with_a_private_ca(tls_s3: str, certs: Path) -> None:
    store = _store(tls_s3, str(certs / "ca.pem"))
    for _ in range(50):  # the gateway may answer before its filer is up
        try:
            store.ensure_bucket()
            break
        except Exception:
            subprocess.run(["sleep", "0.2"], check=True)
    store.put("k/tls", b"over TLS", {"sha256": "x"})
    assert store.get_range("k/tls", 0, 8) == b"over TLS"


@pytest.mark.parametrize("ca", ["", "other-ca.pem"])
def test_an_untrusted_certificate_is_refused(tls_s3: str, certs: Path, ca: str) -> None:
    store = _store(tls_s3, str(certs / ca) if ca else "")
    with pytest.raises((EndpointUnreachable, Exception), match=r"(?i)certificate"):
        store.head("k/tls")
