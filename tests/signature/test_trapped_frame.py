"""The memory-based signature starts at the exception frame the oops trapped in, not at an
interrupt taken while the kernel panicked. Seen on a real arm64 boot: a timer interrupt in
panic's delay loop put a ``__delay`` exception frame inside the NULL dereference's, and the
crash was titled "NULL pointer dereference in __delay". Here the same shape is made from a
committed real dump's memory analysis: its frames with such an interrupt frame put first."""

from __future__ import annotations

import dataclasses

import pytest

from signature import compute_signature
from signature.inputs import signature_input

from ..vmcore.conftest import real_cases


@pytest.mark.parametrize("case", real_cases(scenario="uau"),
                         ids=lambda c: getattr(c, "name", str(c)))
def test_an_interrupt_in_panics_delay_loop_does_not_move_the_signature(case: object) -> None:
    from ..vmcore.test_deep_real import _report

    report = _report(case)  # type: ignore[arg-type]
    mem = report.memory
    assert mem is not None and report.rip is not None
    trap = next(f for f in mem.frames if f.exception)
    irq = dataclasses.replace(trap, function="__delay", offset=0x8C, size=0xE4, module=None,
                              address=trap.address ^ 0x1000)
    with_irq = dataclasses.replace(report, memory=dataclasses.replace(
        mem, frames=(irq, *mem.frames)))
    want = compute_signature(signature_input(report))
    got = compute_signature(signature_input(with_irq))
    assert (got.id, got.text) == (want.id, want.text)
    # Without the log's RIP there is nothing to tell them apart: the innermost one is taken.
    blind = compute_signature(signature_input(dataclasses.replace(with_irq, rip=None)))
    assert "__delay" in blind.text
