"""term_safe: host text printed on a terminal shows every control, bidi and stray character as
a visible escape and can fake no escape, line or table row; name_text: a file name's bytes as
valid text."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime

import pytest

from crashfleet.termviews import cluster_table
from foundation.text import name_text, term_safe
from store import ClusterRow

# Nothing a terminal acts on: C0/C1 controls, DEL, bidi controls, lone surrogates.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e"
                         "\u2066-\u2069\ud800-\udfff]")


@pytest.mark.parametrize(("raw", "shown"), [
    ("plain text 6.1.0-56-cloud-amd64", "plain text 6.1.0-56-cloud-amd64"),
    ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),  # clear screen, cursor home
    ("\x1b]0;owned\x07", "\\x1b]0;owned\\x07"),  # OSC: retitle the terminal
    ("\x1b]8;;http://evil/\x1b\\link", "\\x1b]8;;http://evil/\\x1b\\\\link"),  # OSC 8
    ("a\x00b\rc\x7fd", "a\\x00b\\x0dc\\x7fd"),
    ("\x9b31m", "\\x9b31m"),  # C1 CSI
    ("abc\u202edcba", "abc\\u202edcba"),  # right-to-left override
    ("\u2066x\u2069\u200e\u200f\u061c", "\\u2066x\\u2069\\u200e\\u200f\\u061c"),
    ("bad-\udcff", "bad-\\udcff"),  # a surrogate-escaped name byte
    ("row\nFAKE  99", "row\\x0aFAKE  99"),  # a newline cannot fake a table row
    ("\\x1b", "\\\\x1b"),  # a literal backslash cannot fake an escape
    ("tab\there", "tab\\x09here"),
    ("é 中文 🙂", "é 中文 🙂"),  # printable non-ASCII stays readable
])
def test_term_safe(raw: str, shown: str) -> None:
    assert term_safe(raw) == shown
    assert not RAW_CONTROL.search(term_safe(raw)) and "\n" not in term_safe(raw)


def test_keep_newlines_keeps_only_line_breaks() -> None:
    text = "line one\x1b[31m\nline two\r\n\u202eend"
    assert term_safe(text, keep_newlines=True) == (
        "line one\\x1b[31m\nline two\\x0d\n\\u202eend")


def test_every_code_point_below_0x3000_is_safe_after_escaping() -> None:
    text = "".join(chr(c) for c in range(0x3000))
    out = term_safe(text)
    assert not RAW_CONTROL.search(out) and "\n" not in out


@pytest.mark.parametrize(("name", "text"), [
    (b"vmcore", "vmcore"),
    (b"bad-\xff.dump", "bad-\\xff.dump"),
    (b"\xc3\xa9t\xc3\xa9", "été"),
])
def test_name_text(name: bytes, text: str) -> None:
    assert name_text(name) == text
    assert name_text(os.fsdecode(name)) == text
    name_text(text).encode("utf-8")  # always valid UTF-8


def test_cluster_table_escapes_host_text() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    row = ClusterRow(id="c1", signature="oops\x1b]0;x\x07 in f\u202e\nFAKE ROW",
                     panic_class="oops", taint="G", findings=("bad\x1b[2J",), count=1, hosts=1,
                     kernels=("6.1\x00\n9",), first_seen=now, last_seen=now)
    table = cluster_table([row])
    assert not RAW_CONTROL.search(table)
    assert len(table.splitlines()) == 4  # header, row, findings, one signature line
    assert "\\x1b]0;x\\x07" in table and "\\u202e" in table and "\\x0aFAKE ROW" in table


def test_cluster_table_never_cuts_an_escape() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    sig = "x" * 69 + "\u202e" + "y" * 10 + "\\" + "z" * 60
    row = ClusterRow(id="c1", signature=sig, panic_class="oops", taint="G", findings=(),
                     count=1, hosts=1, kernels=("6.1",), first_seen=now, last_seen=now)
    body = [ln.strip() for ln in cluster_table([row], width=76).splitlines()[2:]]
    assert "".join(body) == term_safe(sig)
    assert body[1].startswith("\\u202e")
    assert all(len(ln) <= 70 for ln in body)
