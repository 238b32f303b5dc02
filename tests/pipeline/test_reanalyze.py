"""``crashfleet reanalyze`` on the embedded pipeline with real dumps: crashes signed by "old
rules" move to the cluster today's rules give them, counts move exactly once even when the
request is delivered again, and each crash keeps its history."""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

import signature.inputs
from crashfleet.cli import main
from signature import Signature, SignatureInput, compute_signature
from store import CrashStore
from store.history import history
from store.schema import cluster_days, clusters, crashes


def _old_rules(inp: SignatureInput) -> Signature:
    """The signature rules before a change: findings were not part of the signature (a
    stand-in for a rule change; the real rules compute the "new" signature)."""
    sig = compute_signature(inp)
    return dataclasses.replace(sig, id="0ld" + sig.id[3:], findings=(),
                               text="old: " + sig.text)


def _cluster_counts(store: CrashStore) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {r.id: r.count for r in conn.execute(sa.select(clusters.c.id, clusters.c.count))}


def test_reanalyze_moves_counts_once_and_keeps_history(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        fixture_dumps: list[tuple[dict[str, object], Path]],
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CRASHFLEET_CONFIG", raising=False)
    for name in [k for k in __import__("os").environ if k.startswith("CRASHFLEET_")]:
        monkeypatch.delenv(name)
    spool, data = tmp_path / "spool", tmp_path / "data"
    uau = {}
    for m, dump in fixture_dumps:
        if m["scenario"] == "uau":
            uau.setdefault(m["kernel_release"], (m, dump))
    for m, dump in list(uau.values())[:2]:
        host = spool / f"host-{m['boot']}"
        host.mkdir(parents=True, exist_ok=True)
        shutil.copy(dump, host / f"{m['case']}.dump")
    monkeypatch.setenv("CRASHFLEET_STORE_URL", f"sqlite:///{data / 'crashfleet.sqlite'}")
    run = ["run", "--spool", str(spool), "--data", str(data), "--once", "--metrics-port", "0"]

    monkeypatch.setattr(signature.inputs, "compute_signature", _old_rules)
    assert main(run) == 0
    monkeypatch.setattr(signature.inputs, "compute_signature", compute_signature)
    store = CrashStore(f"sqlite:///{data / 'crashfleet.sqlite'}")
    (old_cluster,) = [c for c, n in _cluster_counts(store).items() if n == 2]
    capsys.readouterr()

    assert main(["reanalyze", "--cluster", old_cluster, "--data", str(data)]) == 0
    assert "requested re-analysis of 2 crashes" in capsys.readouterr().out
    assert main(run) == 0
    counts = _cluster_counts(store)
    assert counts[old_cluster] == 0
    (new_cluster,) = [c for c, n in counts.items() if n == 2]
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(crashes.c.event_id, crashes.c.cluster_id)).all()
    assert {r.cluster_id for r in rows} == {new_cluster} and len(rows) == 2
    for r in rows:
        (h,) = history(store, r.event_id)
        assert (h.old_cluster_id, h.new_cluster_id) == (old_cluster, new_cluster)
        assert h.old_signature_id.startswith("0ld")
    # The web's per-cluster aggregates moved with the crashes: days and hosts.
    with store.engine.connect() as conn:
        days = dict(conn.execute(sa.select(cluster_days.c.cluster_id,
                                           sa.func.sum(cluster_days.c.count))
                                 .group_by(cluster_days.c.cluster_id)).all())
        hosts = dict(conn.execute(sa.select(clusters.c.id, clusters.c.hosts)).all())
    assert days.get(old_cluster, 0) == 0 and days[new_cluster] == 2
    assert hosts[old_cluster] == 0 and hosts[new_cluster] == 2

    # The same request delivered again (the re-analysis group's offsets lost): no change.
    db = sqlite3.connect(data / "events.sqlite")
    db.execute("DELETE FROM group_offsets WHERE grp LIKE '%-reanalysis'")
    db.commit()
    db.close()
    assert main(run) == 0
    assert _cluster_counts(store) == counts
    assert all(len(history(store, r.event_id)) == 1 for r in rows)

    # A new request with unchanged rules: recorded in the history, nothing moves.
    assert main(["reanalyze", "--all", "--data", str(data)]) == 0
    assert main(run) == 0
    assert _cluster_counts(store) == counts
    assert all(len(history(store, r.event_id)) == 2 for r in rows)
    store.dispose()
