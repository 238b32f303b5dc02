# ruff: noqa: E501  (literal kernel log excerpts keep their real line lengths)
"""Alternative titles as a cluster join rule, measured: pairwise precision and recall before
(frames only) and after (frames, then alternative titles) on the fixture corpus and on literal
cases of one bug reached through different paths and kernel builds. The figures in
docs/clustering.md come from here."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import pytest

from signature import Signature
from signature.cluster import ClusterCandidate, choose_cluster
from signature.inputs import Signed, sign_report
from signature.titles import Title
from vmcore.analyze import analyze_log

from ..fixtures.identity import oracle_exists, read_oracle
from .test_titles import CPU, HW, PF, _oops

DUMPS = Path(__file__).resolve().parents[1] / "fixtures" / "dumps"
CPU_510 = "CPU: 0 PID: 84 Comm: insmod Tainted: G           OE     5.10.0-32-cloud-amd64 #1 Debian 5.10.223-1"

NULL_HEAD = "BUG: kernel NULL pointer dereference, address: 0000000000000008\n" + PF.format("read access")


def _trace(*frames: str) -> str:
    return "\n".join(f" {f}" for f in frames)


def _path_oops(head: str, rip: str, *frames: str, cpu: str = CPU, panic: str = "Fatal exception") -> bytes:
    """An oops whose trace is ``frames`` then a kthread bottom (no insmod tail)."""
    lines = [head, cpu, HW, f"RIP: 0010:{rip}", "Call Trace:", " <TASK>", _trace(*frames),
             " </TASK>", "Modules linked in: vendor_x(OE) vendor_y(OE) qemu_fw_cfg",
             "---[ end trace 0000000000000000 ]---", f"Kernel panic - not syncing: {panic}"]
    return ("\n".join(lines) + "\n").encode()


SLUB_BUG = "------------[ cut here ]------------\nkernel BUG at mm/slub.c:{}!\ninvalid opcode: 0000 [#1] PREEMPT SMP NOPTI"
WARN = "------------[ cut here ]------------\nWARNING: CPU: 1 PID: 93 at vendor_warn.c:{} warn_put_ref+0xf/0x20 [vendor_x]"

# (label, log): one label per bug. Variations a fleet shows for one bug: the call path, the
# kernel build (in-tree file:line, syscall plumbing), the module being loaded or running.
LITERAL: list[tuple[str, bytes]] = [
    # A: NULL dereference in ring_fill, reached at load, from an ioctl and from a workqueue.
    ("A", _oops(NULL_HEAD, "ring_fill+0xc/0x40 [vendor_x]", " ring_init+0x1d/0x1000 [vendor_x]")),
    ("A", _path_oops(NULL_HEAD, "ring_fill+0xc/0x40 [vendor_x]", "ring_ioctl+0x51/0x90 [vendor_x]",
                     "__x64_sys_ioctl+0x8d/0xd0", "do_syscall_64+0x58/0xc0",
                     "entry_SYSCALL_64_after_hwframe+0x64/0xce")),
    ("A", _path_oops(NULL_HEAD, "ring_fill+0xc/0x40 [vendor_x]", "ring_work+0x2a/0x50 [vendor_x]",
                     "process_one_work+0x1c4/0x380", "worker_thread+0x4d/0x380",
                     "kthread+0xda/0x100", "ret_from_fork+0x22/0x30")),
    ("A", _oops(NULL_HEAD, "ring_fill+0xc/0x40 [vendor_x]", " ring_init+0x1d/0x1000 [vendor_x]",
                cpu=CPU_510)),
    # B: a different bug on A's load path (must stay apart from A).
    ("B", _oops(NULL_HEAD, "ring_drain+0x11/0x40 [vendor_x]", " ring_init+0x1d/0x1000 [vendor_x]")),
    # C: same function name as A in another driver (must stay apart from A).
    ("C", _oops(NULL_HEAD, "ring_fill+0xc/0x40 [vendor_y]", " ring_init+0x1d/0x1000 [vendor_y]")),
    # D: double free caught by SLUB in free_ring, on two builds (the BUG line moved) and paths.
    ("D", _oops(SLUB_BUG.format(4327), "kfree+0x2a1/0x2b0", " free_ring+0x1d/0x40 [vendor_x]")),
    ("D", _path_oops(SLUB_BUG.format(4409), "kfree+0x2a1/0x2b0", "free_ring+0x1d/0x40 [vendor_x]",
                     "ring_release+0x11/0x30 [vendor_x]", "__fput+0x9a/0x260",
                     "task_work_run+0x59/0x90", "exit_to_user_mode_prepare+0x1a4/0x1b0",
                     "syscall_exit_to_user_mode+0x17/0x40", "do_syscall_64+0x67/0xc0")),
    # E: WARNING in warn_put_ref on two paths (panic_on_warn).
    ("E", _oops(WARN.format(11), "warn_put_ref+0xf/0x20 [vendor_x]", " warn_init+0x1d/0x1000 [vendor_x]",
                panic="kernel: panic_on_warn set ...")),
    ("E", _path_oops(WARN.format(11), "warn_put_ref+0xf/0x20 [vendor_x]",
                     "warn_timer_fn+0x1d/0x40 [vendor_x]", "call_timer_fn+0x27/0x130",
                     "__run_timers.part.0+0x1ed/0x280", "run_timer_softirq+0x26/0x50",
                     "__do_softirq+0xc7/0x2ac", panic="kernel: panic_on_warn set ...")),
    # F, G: soft lockups in two different spinning functions of one module.
    ("F", _path_oops("watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [vspin:94]",
                     "spin_wait_ready+0x9/0x20 [vendor_x]", "kthread+0xda/0x100",
                     "ret_from_fork+0x22/0x30", panic="softlockup: hung tasks")),
    ("G", _path_oops("watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [vspin:95]",
                     "spin_wait_idle+0x9/0x20 [vendor_x]", "kthread+0xda/0x100",
                     "ret_from_fork+0x22/0x30", panic="softlockup: hung tasks")),
    # H, I: two crashes whose frames are all unresolved. Their signatures are the same
    # (page_fault: null-pointer-dereference | ?? [EO]): the one false pair here, made by the
    # signature, not by titles (a title naming no function is no alternative).
    ("H", _path_oops(NULL_HEAD, "0xffffffffc0400010", "? 0xffffffffc0400100")),
    ("I", _path_oops(NULL_HEAD, "0xffffffffc0500010", "? 0xffffffffc0500100")),
]


def _cluster(signed: list[tuple[Signature, Title]], use_titles: bool) -> list[str]:
    """Cluster ids as the store assigns them, in arrival order."""
    by_sig: dict[str, str] = {}
    clusters: list[tuple[Signature, ClusterCandidate]] = []
    out = []
    for sig, title in signed:
        cid = by_sig.get(sig.id)
        if cid is None:
            cands = [c for s, c in clusters if (s.panic_class, s.taint, s.findings)
                     == (sig.panic_class, sig.taint, sig.findings)]
            alts = title.alternatives if use_titles else ()
            cid = choose_cluster(sig, cands, alts) or sig.id
            if cid == sig.id:
                clusters.append((sig, ClusterCandidate(sig.id, sig.frames, alts)))
            by_sig[sig.id] = cid
        out.append(cid)
    return out


def _scores(labels: list[str], pred: list[str]) -> tuple[float, float]:
    tp = fp = fn = 0
    for a, b in combinations(range(len(labels)), 2):
        same_truth, same_pred = labels[a] == labels[b], pred[a] == pred[b]
        tp += same_truth and same_pred
        fp += same_pred and not same_truth
        fn += same_truth and not same_pred
    return (round(tp / (tp + fp) if tp + fp else 1.0, 3),
            round(tp / (tp + fn) if tp + fn else 1.0, 3))


def _sign_logs(cases: list[tuple[str, bytes]]) -> list[tuple[str, Signed]]:
    return [(label, sign_report(analyze_log(log, source="literal").report))
            for label, log in cases]


def _measure(cases: list[tuple[str, bytes]]) -> dict[str, tuple[float, float]]:
    return _measure_signed(_sign_logs(cases))


def _measure_signed(cases: list[tuple[str, Signed]]) -> dict[str, tuple[float, float]]:
    signed = [(s.signature, s.title) for _, s in cases]
    labels = [lab for lab, _ in cases]
    return {"exact signature": _scores(labels, [s.id for s, _ in signed]),
            "frames join (before)": _scores(labels, _cluster(signed, use_titles=False)),
            "frames + alternative titles (after)": _scores(labels, _cluster(signed, True))}


def _corpus() -> list[tuple[str, bytes]]:
    """Every real kernel log committed: the fixture cases' dmesg, labelled by their cluster."""
    out = []
    for case in sorted(DUMPS.iterdir()):
        if oracle_exists(case / "dmesg.txt"):
            m = json.loads((case / "manifest.json").read_text())
            out.append((str(m["cluster"]), read_oracle(case / "dmesg.txt")))
    return out


def test_literal_cases_before_and_after() -> None:
    got = _measure(LITERAL)
    assert got == {"exact signature": (0.5, 0.125),
                   "frames join (before)": (0.5, 0.125),
                   "frames + alternative titles (after)": (0.889, 1.0)}, got


def test_corpus_before_and_after() -> None:
    got = _measure(_corpus())
    # Before, the frames join leaves three bugs split: the OOM panic on 5.10, 6.1 and 6.12
    # (the page allocator was renamed under it: __alloc_pages_nodemask/alloc_pages_vma,
    # __alloc_pages/vma_alloc_folio, ...), the list corruption (6.12's reporter is
    # __list_del_entry_valid_or_report, so the first frames differ) and the sysrq panic on
    # arm64 (arm64 keeps other frames of the sysrq path; arm64-6.1-uau-2 is committed twice, mkd-zlib and mkd-erase-ro: one log). Their titles are the same on every
    # kernel and architecture, and join them.
    assert got == {"exact signature": (1.0, 0.81), "frames join (before)": (1.0, 0.942),
                   "frames + alternative titles (after)": (1.0, 1.0)}, got


def test_the_arrival_order_does_not_change_the_result() -> None:
    assert _measure(LITERAL[::-1]) == _measure(LITERAL)


def test_no_alternative_without_a_function() -> None:
    unresolved = sign_report(analyze_log(LITERAL[-1][1], source="literal").report)
    assert unresolved.title.alternatives == ()


def _dump_cases() -> list[tuple[str, Signed]]:
    """The x86_64 fixture dumps on this machine (committed, or the recorded ones in the
    generated corpus, by SHA-256), analyzed from memory with their kernel's symbols as the
    deep tests do, labelled by their manifest's cluster."""
    from ..vmcore.conftest import CASES
    from ..vmcore.test_deep_real import _report

    return [(str(c.manifest["cluster"]), sign_report(_report(c))) for c in CASES
            if c.manifest.get("arch", "x86_64") == "x86_64"]


def per_kind(cases: list[tuple[str, bytes]]) -> list[tuple[str, str, int, int, float, float]]:
    """Per crash kind of the logs ``cases`` (see :func:`per_kind_signed`)."""
    return per_kind_signed(_sign_logs(cases))


def per_kind_signed(cases: list[tuple[str, Signed]]
                    ) -> list[tuple[str, str, int, int, float, float]]:
    """Per crash kind: (kind, titles of its clusters, crashes, clusters, precision, recall),
    precision and recall over the pairs with at least one crash of the kind."""
    signed = [s for _, s in cases]
    pred = _cluster([(s.signature, s.title) for s in signed], use_titles=True)
    labels = [lab for lab, _ in cases]
    rows = []
    for kind in sorted({s.title.kind for s in signed}):
        idx = [i for i, s in enumerate(signed) if s.title.kind == kind]
        tp = fp = fn = 0
        for a, b in combinations(range(len(cases)), 2):
            if a in idx or b in idx:
                st, sp = labels[a] == labels[b], pred[a] == pred[b]
                tp, fp, fn = tp + (st and sp), fp + (sp and not st), fn + (st and not sp)
        titles = " / ".join(sorted({signed[i].title.text for i in idx}))
        rows.append((kind, titles, len(idx), len({pred[i] for i in idx}),
                     tp / (tp + fp) if tp + fp else 1.0, tp / (tp + fn) if tp + fn else 1.0))
    return rows


def test_per_kind_precision_and_recall_on_the_real_logs() -> None:
    rows = per_kind(_corpus())
    assert len(rows) == 14
    assert all(p == 1.0 and r == 1.0 for *_, p, r in rows), rows


def test_per_kind_precision_and_recall_on_the_real_dumps() -> None:
    """The dumps themselves, signed from memory (the symbolized path the analyzer takes with
    a symbol cache): where this machine has the dumps of at least two bugs."""
    cases = _dump_cases()
    if len({label for label, _ in cases}) < 2:
        pytest.skip("the dumps of fewer than two bugs are on this machine")
    rows = per_kind_signed(cases)
    assert all(p >= 0.98 and r >= 0.98 for *_, p, r in rows), rows


if __name__ == "__main__":  # the tables in docs/clustering.md
    dumps = _dump_cases()
    for name, signed in (("logs", _sign_logs(_corpus())), ("dumps", dumps),
                         ("literal", _sign_logs(LITERAL))):
        print(name, len(signed), "crashes,", len({lab for lab, _ in signed}), "bugs")
        for method, (p, r) in _measure_signed(signed).items():
            print(f"  {method:40} precision {p:.3f}  recall {r:.3f}")
    for name, signed in (("logs", _sign_logs(_corpus())), ("dumps", dumps)):
        print(f"\n{name}\n| kind | title | crashes | clusters | precision | recall |")
        print("| --- | --- | --- | --- | --- | --- |")
        for kind, title, n, k, p, r in per_kind_signed(signed):
            print(f"| {kind} | `{title}` | {n} | {k} | {p:.2f} | {r:.2f} |")
