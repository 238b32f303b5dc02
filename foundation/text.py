"""Text that came from a host, made safe for a sink: terminals and one-line log fields.

Every byte from a crashed host is hostile (kernel release, host and file names, comm, module
and function names, the whole log). :func:`term_safe` makes such text printable on a terminal
without letting it act: C0/C1 controls (ESC, BEL, NUL, CR, LF, DEL, CSI…), bidi controls
(U+202A to U+202E, U+2066 to U+2069, LRM/RLM/ALM) and lone surrogates become visible escapes
(``\\x1b``, ``\\u202e``), and the backslash itself is doubled so an escape can't be faked.
``--json`` output is never passed through it: JSON has its own exact escaping.
"""

from __future__ import annotations

import re

__all__ = ["name_text", "term_safe"]

_UNSAFE = re.compile(
    "[\\\\\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(m: re.Match[str]) -> str:
    ch = m.group()
    if ch == "\\":
        return "\\\\"
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def term_safe(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control, bidi and surrogate character shown as an escape; with
    ``keep_newlines``, ``\\n`` stays a line break (multi-line blocks such as a kernel log)."""
    if keep_newlines:
        return "\n".join(_UNSAFE.sub(_escape, line) for line in text.split("\n"))
    return _UNSAFE.sub(_escape, text)


def name_text(name: str | bytes) -> str:
    """A file name as valid Unicode text, for a log field, an event or a database column.

    A name is bytes: the bytes that are not UTF-8 (which Python carries as surrogate escapes)
    become ``\\xff``-style escapes; a valid name is returned unchanged. For display only: the
    exact name is kept where the file is opened again."""
    if isinstance(name, bytes):
        return name.decode("utf-8", "backslashreplace")
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no file name decodes to
        raw = name.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "backslashreplace")
