"""Why a crash has its signature and title: every frame's fate with the data-file line that
decided it, every normalization applied, and the crash-kinds row that made the title.

The same record is printed by ``crashfleet signature --explain`` and stored with each crash
(``to_dict``, JSON-ready) for the web UI. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from signature import (
    MAX_FRAMES,
    MAX_TEXT,
    FrameDecision,
    Signature,
    SignatureInput,
    walk_frames,
)
from signature.titles import KINDS_FILE, Title

__all__ = ["MAX_EXPLAINED_FRAMES", "Explanation", "explain"]

MAX_EXPLAINED_FRAMES = 64  # frames past the budget are listed up to here, then counted


@dataclass(frozen=True)
class Explanation:
    """``frames`` the decision on each input frame (RIP first); ``omitted`` frames past
    :data:`MAX_EXPLAINED_FRAMES`; ``normalizations`` of the key (taint, findings, text);
    ``signature`` and ``title`` the results; ``source`` where the frames came from."""

    source: str
    frames: tuple[FrameDecision, ...]
    omitted: int
    normalizations: tuple[str, ...]
    signature: Signature
    title: Title

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (stored with each crash)."""
        t = self.title
        return {
            "source": self.source,
            "frames": [{"frame": d.raw, "text": d.text, "verdict": d.verdict,
                        "rule": None if d.rule is None else
                        {"file": d.rule.file, "line": d.rule.line, "pattern": d.rule.pattern},
                        "normalizations": list(d.normalizations)} for d in self.frames],
            "omitted_frames": self.omitted,
            "normalizations": list(self.normalizations),
            "signature": {"id": self.signature.id, "text": self.signature.text,
                          "frames": list(self.signature.frames),
                          "panic_class": self.signature.panic_class,
                          "taint": self.signature.taint,
                          "findings": list(self.signature.findings)},
            "title": {"text": t.text, "kind": t.kind,
                      "rule": {"file": KINDS_FILE, "line": t.line} if t.line else None,
                      "fact": t.fact, "function": t.function,
                      "alternatives": list(t.alternatives)},
        }


def _key_steps(inp: SignatureInput, sig: Signature) -> list[str]:
    steps = []
    if inp.taint_letters != sig.taint:
        steps.append(f"taint {inp.taint_letters!r} -> {sig.taint!r} (G and blanks dropped, "
                     "letters sorted)")
    if sig.findings:
        steps.append("findings spelled kind(module), sorted, duplicates merged: "
                     + ", ".join(sig.findings))
    if len(sig.text) >= MAX_TEXT and sig.text.endswith("…"):
        steps.append(f"text cut to {MAX_TEXT} characters")
    return steps


def explain(inp: SignatureInput, sig: Signature, title: Title) -> Explanation:
    """The explanation of ``sig`` and ``title``, both computed from ``inp``."""
    decisions = walk_frames(inp.rip, inp.frames, MAX_FRAMES)
    steps = _key_steps(inp, sig)
    if not any(d.verdict in ("kept", "prefix") for d in decisions):
        steps.append("no frame kept: the signature's frame is ??")
    seen: set[str] = set()
    for d in decisions:
        for s in d.normalizations:
            if d.verdict not in ("past budget", "unreliable"):
                seen.add(s)
        if d.text.startswith("??") and d.verdict in ("kept", "prefix"):
            seen.add("a bare address became ??")
    steps.extend(sorted(seen))
    return Explanation(inp.source, decisions[:MAX_EXPLAINED_FRAMES],
                       max(0, len(decisions) - MAX_EXPLAINED_FRAMES), tuple(steps), sig, title)
