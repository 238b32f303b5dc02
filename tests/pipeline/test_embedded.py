"""The embedded pipeline (`crashfleet run --once`) on the committed real dumps: every dump is
analyzed once and the clusters match the fixture manifests' cluster labels exactly."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import pytest


def pair_scores(truth: dict[str, str], predicted: dict[str, str]) -> tuple[float, float]:
    """Pairwise precision and recall of a clustering against labels."""
    tp = fp = fn = 0
    for a, b in combinations(sorted(truth), 2):
        same_truth, same_pred = truth[a] == truth[b], predicted[a] == predicted[b]
        tp += same_truth and same_pred
        fp += same_pred and not same_truth
        fn += same_truth and not same_pred
    return (tp / (tp + fp) if tp + fp else 1.0, tp / (tp + fn) if tp + fn else 1.0)


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crashfleet.cli", *args], env=env,
                          capture_output=True, text=True, timeout=600)


def test_run_once_clusters_the_fixture_corpus(
        tmp_path: Path, fixture_dumps: list[tuple[dict[str, object], Path]]) -> None:
    dumps = fixture_dumps
    spool = tmp_path / "spool"
    by_name: dict[str, dict[str, object]] = {}
    for m, dump in dumps:
        host = spool / f"host-{m['boot']}"
        host.mkdir(parents=True, exist_ok=True)
        shutil.copy(dump, host / f"{m['case']}.dump")
        by_name[str(m["case"])] = m
    (spool / "junk.dump").write_bytes(os.urandom(10000))  # not a dump: dead-lettered, kept

    env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHFLEET_")}
    env["CRASHFLEET_STORE_URL"] = f"sqlite:///{tmp_path / 'data' / 'crashfleet.sqlite'}"
    r = run_cli("--log-format", "json", "run", "--spool", str(spool), "--data",
                str(tmp_path / "data"), "--once", "--metrics-port", "0", env=env)
    assert r.returncode == 0, r.stderr
    assert "CLUSTER" in r.stdout and "use-after-module-unload(vendordeferio)" in r.stdout
    logs = [json.loads(ln) for ln in r.stderr.splitlines() if ln.startswith("{")]
    stored = [e for e in logs if e["event"] == "crash.stored"]
    dead = [e for e in logs if e["event"] == "event.dead_lettered"]
    # Identical bytes (one dump laid out two ways) are one crash: the event id is the SHA-256.
    distinct = {hashlib.sha256(d.read_bytes()).hexdigest() for _, d in dumps}
    assert len(stored) == len(distinct)
    assert len(dead) == 1 and "unknown dump format" in dead[0]["reason"]

    clusters = json.loads(run_cli("clusters", "--json", env=env).stdout)
    # Dumps are filed under host-<boot>: every dump of one boot is the same crash, so each
    # host must land in exactly one cluster.
    predicted_sets: dict[str, set[str]] = defaultdict(set)
    for c in clusters:
        crashes = json.loads(run_cli("crashes", "--cluster", c["id"], "--json", env=env).stdout)
        assert len(crashes) == c["count"]
        for crash in crashes:
            predicted_sets[crash["host"]].add(c["id"])
    assert all(len(ids) == 1 for ids in predicted_sets.values()), predicted_sets
    predicted = {host: ids.pop() for host, ids in predicted_sets.items()}
    truth: dict[str, str] = {}
    per_host: dict[str, set[str]] = defaultdict(set)
    for m in by_name.values():
        per_host[f"host-{m['boot']}"].add(str(m["cluster"]))
    for host, labels in per_host.items():
        assert len(labels) == 1, f"{host} mixes labels {labels}"
        truth[host] = labels.pop()
    assert set(predicted) == set(truth)
    precision, recall = pair_scores(truth, predicted)
    assert (precision, recall) == (1.0, 1.0), (precision, recall, predicted)
    uau = [c for c in clusters if "use-after-module-unload(vendordeferio)" in c["findings"]]
    assert len(uau) == 1 and len(uau[0]["kernels"]) >= 2
    # The same bug on 5.10 and 6.1 has one title, naming the unloaded module.
    assert uau[0]["title"] == "BUG: unable to handle page fault in unloaded module vendordeferio"
    assert all(c["title"] for c in clusters)
    assert "BUG: unable to handle page fault in unloaded module vendordeferio" in r.stdout
    crashes = json.loads(run_cli("crashes", "--cluster", uau[0]["id"], "--json", env=env).stdout)
    assert {c["title"] for c in crashes} == {uau[0]["title"]}
    if any(m.get("arch") == "arm64" and m["scenario"] == "uau" for m, _ in dumps):
        # the same bug from an arm64 kernel joins the x86_64 cluster (arch is a facet)
        assert any(str(k).endswith("-arm64") for k in uau[0]["kernels"]), uau[0]["kernels"]


@pytest.mark.parametrize(("truth", "pred", "scores"), [
    ({"a": "x", "b": "x", "c": "y"}, {"a": 1, "b": 1, "c": 2}, (1.0, 1.0)),
    ({"a": "x", "b": "x", "c": "y"}, {"a": 1, "b": 2, "c": 3}, (1.0, 0.0)),
    ({"a": "x", "b": "y", "c": "y"}, {"a": 1, "b": 1, "c": 1}, (1 / 3, 1.0)),
])
def test_pair_scores(truth: dict[str, str], pred: dict[str, int],
                     scores: tuple[float, float]) -> None:
    assert pair_scores(truth, {k: str(v) for k, v in pred.items()}) == pytest.approx(scores)


def test_log_only_pipeline_signs_like_the_full_one(
        tmp_path: Path, fixture_dumps: list[tuple[dict[str, object], Path]]) -> None:
    """Log-only: only the kernel log read from the dump travels; the crash gets the same
    signature as from the memory image, and no memory image is stored."""
    spool = tmp_path / "spool"
    spool.mkdir()
    picked = {}
    for m, dump in fixture_dumps:
        picked.setdefault(m["scenario"], (m, dump))
    for m, dump in picked.values():
        shutil.copy(dump, spool / f"{m['case']}.dump")
    sigs = {}
    for content in ("full", "log-only"):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHFLEET_")}
        data = tmp_path / content
        env["CRASHFLEET_STORE_URL"] = f"sqlite:///{data / 'crashfleet.sqlite'}"
        env["CRASHFLEET_AGENT_CONTENT"] = content
        r = run_cli("run", "--spool", str(spool), "--data", str(data), "--once",
                    "--metrics-port", "0", env=env)
        assert r.returncode == 0, r.stderr
        clusters = json.loads(run_cli("clusters", "--json", env=env).stdout)
        sigs[content] = sorted((c["signature"], c["count"]) for c in clusters)
        stored = [p for p in (data / "objects" / "data").rglob("*") if p.is_file()]
        images = [p for p in stored if not p.name.endswith((".dmesg", ".json", ".flatindex"))]
        if content == "log-only":
            assert images == [] and any(p.name.endswith(".dmesg") for p in stored)
        else:
            assert len(images) == len(picked)
    assert sigs["log-only"] == sigs["full"]
    assert len(sigs["full"]) == len(picked)


def _corpus_dumps() -> list[tuple[dict[str, object], Path]]:
    """The dumps of this machine's generated corpus (``make fixtures``) with the manifests
    made beside them (a fresh machine has none)."""
    from ..conftest import CORPUS

    out = []
    for manifest in sorted(CORPUS.glob("*/manifest.json")):
        m = json.loads(manifest.read_text())
        dump = manifest.parent / str(m.get("dump", ""))
        if m.get("dump") and dump.is_file() and m.get("layout", "plain") == "plain":
            out.append((m, dump))
    return out


def _reports(data: Path) -> dict[str, dict[str, object]]:
    """The stored reports of an embedded run, by dump key."""
    return {p.name.removesuffix(".report.json"): json.loads(p.read_text())
            for p in (data / "objects" / "data" / "dumps").glob("*.report.json")}


def test_dumps_analyzed_from_their_own_symbols_cluster_with_their_packs(
        tmp_path: Path, fixture_dumps: list[tuple[dict[str, object], Path]]) -> None:
    """The committed x86_64 6.x dumps through the embedded pipeline twice: with no pack
    anywhere (the analysis reads the dump's own kallsyms, BTF and ORC) and with each kernel's
    pack in the symbol cache. Every dump gets the same signature both ways, from stacks read
    in memory both ways, and the stored reports say which symbols were used."""
    from symbol_cache import build_pack, encode_pack

    from ..vmcore.conftest import debug_vmlinux

    boots: dict[str, tuple[dict[str, object], Path]] = {}
    for m, dump in [*fixture_dumps, *_corpus_dumps()]:  # one dump per boot
        if m.get("arch", "x86_64") == "x86_64" and \
                str(m["kernel_release"]).startswith(("6.1.", "6.12.")):
            boots.setdefault(str(m["boot"]), (m, dump))
    picked = list(boots.values())
    if not picked:
        pytest.skip("no x86_64 6.x dump fixture")
    spool = tmp_path / "spool"
    spool.mkdir()
    for m, dump in picked:
        shutil.copy(dump, spool / f"{m['case']}.dump")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHFLEET_")}
    env["CRASHFLEET_SYMBOLS_SOURCES"] = ""  # nothing fetched: a pack is in the cache or not
    sigs: dict[str, dict[str, str]] = {}
    for mode in ("dump", "pack"):
        data = tmp_path / mode
        if mode == "pack":
            packs = data / "symbols" / "packs"  # the embedded run's symbol cache
            packs.mkdir(parents=True)
            for release in sorted({str(m["kernel_release"]) for m, _d in picked}):
                pack = build_pack(debug_vmlinux(release), source="test")
                (packs / f"{pack.build_id}.pack").write_bytes(encode_pack(pack))
        env["CRASHFLEET_STORE_URL"] = f"sqlite:///{data / 'crashfleet.sqlite'}"
        r = run_cli("run", "--spool", str(spool), "--data", str(data), "--once",
                    "--metrics-port", "0", env=env)
        assert r.returncode == 0, r.stderr
        reports = _reports(data)
        assert len(reports) == len(picked)
        for rep in reports.values():
            memory = rep.get("memory")
            assert isinstance(memory, dict) and memory.get("frames"), rep.get("notes")
            if mode == "dump":
                assert rep["symbols"] == "from the dump (kallsyms, BTF, ORC)", rep["notes"]
            else:
                assert str(rep["symbols"]).startswith("pack "), rep["notes"]
        sigs[mode] = {key: json.dumps(rep["signature"], sort_keys=True)
                      for key, rep in reports.items()}
    assert sigs["dump"] == sigs["pack"]
