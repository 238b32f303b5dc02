"""Byte sources: the object-store source against the in-memory contract and the real S3 server,
including the 5 % bytes-fetched budget on a dump of at least 64 MiB."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ingest import LocalObjectStore
from vmcore.analyze import analyze
from vmcore.errors import PageExcluded, SourceMissing
from vmcore.formats import open_dump
from vmcore.formats.flattened import build_index
from vmcore.logread import read_log
from vmcore.printk import format_dmesg
from vmcore.source import BytesSource, LocalFileSource, ObjectStoreSource

from . import dumpkit as kit
from .conftest import CASES


def test_reads_equal_the_bytes(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(300_000)
    store = LocalObjectStore(tmp_path / "objects")
    store.put("d", data)
    src = ObjectStoreSource(store, "d", block_size=4096, max_blocks=8, max_readahead=4)
    rng = random.Random(2)
    for _ in range(400):
        off = rng.randrange(0, len(data) + 100)
        n = rng.randrange(0, 20_000)
        assert src.read(off, n) == data[off : off + n]
    assert src.size == len(data)
    assert src.requests > 0 and src.bytes_fetched > 0


def test_sequential_reads_use_readahead(tmp_path: Path) -> None:
    data = bytes(1 << 20)
    store = LocalObjectStore(tmp_path / "objects")
    store.put("d", data)
    src = ObjectStoreSource(store, "d", block_size=4096, max_readahead=8)
    for off in range(0, len(data), 512):
        src.read(off, 512)
    assert src.bytes_fetched == len(data)
    assert src.requests < len(data) // 4096 // 4  # far fewer requests than blocks


@pytest.mark.parametrize("whole", [True, False])
def test_a_dump_that_fits_the_cache_is_one_request(tmp_path: Path, whole: bool) -> None:
    """The analyzer's reader: a real dump no larger than ``whole_object_max`` is fetched whole
    by the first read; otherwise misses fetch runs of at least ``min_fetch_blocks`` blocks,
    in fewer requests than block-sized misses. Both analyze to the same report."""
    case = next((c for c in CASES if c.manifest["kernel_release"].startswith("6.1")), None)
    if case is None:
        pytest.skip("no 6.1 dump fixture")
    data = case.dump.read_bytes()
    store = LocalObjectStore(tmp_path / "objects")
    store.put("d", data)
    index = build_index(BytesSource(data)) if data[:12] == b"makedumpfile" else None
    blocks = -(-len(data) // 65536)
    one = ObjectStoreSource(store, "d", size=len(data), block_size=65536, max_blocks=blocks,
                            max_readahead=32, min_fetch_blocks=4,
                            whole_object_max=(16 << 20) if whole else 0)
    plain = ObjectStoreSource(store, "d", size=len(data), block_size=65536, max_blocks=blocks)
    got = analyze(one, flat_index=index, dump_symbols=True).report
    want = analyze(plain, flat_index=index, dump_symbols=True).report
    assert got.to_dict() | {"dump": None} == want.to_dict() | {"dump": None}
    if whole:
        assert (one.requests, one.bytes_fetched) == (1, len(data))
    else:
        assert 1 < one.requests < plain.requests
    assert got.memory is not None and got.memory.frames


def test_missing_object_is_permanent(tmp_path: Path) -> None:
    with pytest.raises(SourceMissing):
        ObjectStoreSource(LocalObjectStore(tmp_path / "objects"), "nope")


def _memory_image(case_dump: Path) -> bytes:
    """Every page of a real kdump dump's physical memory (excluded pages as zeros)."""
    with LocalFileSource(case_dump) as src:
        d = open_dump(src)
        assert d.kdump_header is not None
        pages = []
        for pfn in range(d.kdump_header.max_mapnr):
            try:
                pages.append(d.reader.read_phys(pfn * 4096, 4096))
            except PageExcluded:
                pages.append(bytes(4096))
    return b"".join(pages)


def _big_dump() -> tuple[bytes, bytes]:
    """A dump of at least 64 MiB and its makedumpfile log oracle: a real ELF dump from the
    corpus when there is one, else a real kdump's memory re-containered as an ELF vmcore
    (QEMU's layout), else a synthetic ring padded to 64 MiB."""
    x86 = [c for c in CASES if c.manifest.get("arch", "x86_64") == "x86_64"]  # ELF: x86_64
    for c in x86:
        want = c.oracle_bytes("dmesg")
        if want and c.dump.stat().st_size >= 64 << 20:
            return c.dump.read_bytes(), want
    for c in x86:
        want = c.oracle_bytes("dmesg")
        if want and c.manifest.get("format") == "kdump":
            with LocalFileSource(c.dump) as src:
                notes = b"".join(kit.note(n.name, n.type, n.desc)
                                 for n in open_dump(src).notes)
            image = _memory_image(c.dump)
            if len(image) < 64 << 20:
                image += random.Random(3).randbytes((64 << 20) - len(image))
            return kit.elf_core({0: image}, notes), want
    mem, info = kit.printk_memory([(b"hello from a big dump", 0, 1)])
    image = bytes(mem) + random.Random(3).randbytes((64 << 20) - len(mem))
    return (kit.elf_core({0: image}, kit.note("VMCOREINFO", 0, info)),
            b"[    0.000000] [      T1] hello from a big dump\n")


@pytest.mark.services
def test_s3_analysis_fetches_under_5_percent(services: object, s3_bucket: str) -> None:
    from ingest.s3 import S3ObjectStore

    data, want = _big_dump()
    assert len(data) >= 64 << 20
    store = S3ObjectStore(s3_bucket, endpoint_url=services.s3_endpoint,  # type: ignore[attr-defined]
                          addressing_style="path")
    store.put("dumps/big.vmcore", data)
    src = ObjectStoreSource(store, "dumps/big.vmcore")
    analysis = analyze(src)
    assert analysis.log is not None
    assert format_dmesg(analysis.log.records) == want
    r = analysis.report
    assert r.dump.bytes_fetched == src.bytes_fetched
    assert 0 < src.bytes_fetched <= 0.05 * len(data), (src.bytes_fetched, len(data))
    assert r.to_dict()["dump"]["bytes_fetched"] == src.bytes_fetched  # type: ignore[index]
    # the same bytes through the log-only path
    src2 = ObjectStoreSource(store, "dumps/big.vmcore")
    _info, log = read_log(open_dump(src2))
    assert format_dmesg(log.records) == want


def test_bytes_source_contract() -> None:
    s = BytesSource(b"abcdef", "x")
    assert (s.size, s.name, s.read(4, 10), s.read(10, 1)) == (6, "x", b"ef", b"")


@pytest.mark.services
def test_s3_flattened_with_stored_index(services: object, s3_bucket: str) -> None:
    """The agent stores the index beside a flattened dump; with it, the analyzer fetches a few
    blocks instead of walking every record header."""
    from ingest.s3 import S3ObjectStore
    from vmcore.formats.flattened import INDEX_SUFFIX, FlatIndex, FlatIndexBuilder

    flat = [c for c in CASES if c.manifest.get("format") == "kdump-flattened"
            and c.oracle_bytes("dmesg")]
    if flat:
        data, want = flat[0].dump.read_bytes(), flat[0].oracle_bytes("dmesg")
    else:
        mem, info = kit.printk_memory([(b"flattened hello", 0, 1)])
        pages = {i // 4096: bytes(mem[i : i + 4096]) for i in range(0, len(mem), 4096)}
        noise = {0x1000 + i: random.Random(i).randbytes(4096) for i in range(2000)}
        data = kit.flatten(kit.kdump({**pages, **noise}, info, max_mapnr=0x2000), chunk=4096)
        want = b"[    0.000000] [      T1] flattened hello\n"
    builder = FlatIndexBuilder()  # as the agent does while uploading
    for i in range(0, len(data), 5 << 20):
        builder.feed(data[i : i + (5 << 20)])
    store = S3ObjectStore(s3_bucket, endpoint_url=services.s3_endpoint,  # type: ignore[attr-defined]
                          addressing_style="path")
    store.put("dumps/flat", data)
    store.put("dumps/flat" + INDEX_SUFFIX, builder.finish().to_bytes())
    index = FlatIndex.from_bytes(store.get_range("dumps/flat" + INDEX_SUFFIX, 0, 1 << 30))
    src = ObjectStoreSource(store, "dumps/flat")
    a = analyze(src, flat_index=index)
    assert a.log is not None and format_dmesg(a.log.records) == want
    assert src.bytes_fetched <= 0.05 * len(data), (src.bytes_fetched, len(data))


@pytest.mark.services
def test_cli_reads_s3_uri(services: object, s3_bucket: str, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``crashfleet analyze --json s3://bucket/key`` with the endpoint from the settings."""
    import json

    from crashfleet.commands import analyze as cli
    from ingest.s3 import S3ObjectStore

    mem, info = kit.printk_memory([(b"BUG: kernel NULL pointer dereference, address: "
                                    b"0000000000000000", 0, 5),
                                   (b"Kernel panic - not syncing: Fatal exception", 10, 5)])
    data = kit.elf_core({0: bytes(mem)}, kit.note("VMCOREINFO", 0, info))
    endpoint = services.s3_endpoint  # type: ignore[attr-defined]
    S3ObjectStore(s3_bucket, endpoint_url=endpoint, addressing_style="path").put("d/v", data)
    monkeypatch.setenv("CRASHFLEET_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")
    monkeypatch.setenv("CRASHFLEET_S3_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("CRASHFLEET_S3_ADDRESSING_STYLE", "path")
    assert cli.main([f"s3://{s3_bucket}/d/v", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["panic"]["class"] == "page_fault"
    assert doc["panic"]["message"] == "Fatal exception"
    assert 0 < doc["dump"]["bytes_fetched"] <= len(data)
