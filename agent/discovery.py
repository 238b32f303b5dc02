"""Finding finished dumps under a crash directory, for the layouts met in the field.

- Debian/Ubuntu kdump-tools: ``[<host>-]<STAMP>/dump.<STAMP>`` (STAMP = YYYYMMDDHHMM, optional
  compression suffix) with ``dmesg.<STAMP>``; written as ``dump-incomplete`` first; a
  ``vmcore.<STAMP>`` fallback when makedumpfile failed.
- RHEL/Fedora kdump: ``<ip>-<YYYY-MM-DD-HH:MM:SS>/vmcore`` (``vmcore.flat`` when flattened)
  with ``vmcore-dmesg.txt``; written as ``vmcore-incomplete`` / ``vmcore-dmesg-incomplete.txt``.
- A plain ``vmcore`` (or ``vmcore.flat``) file in the directory or one level below.

Nothing here follows a symbolic link: links are reported as refusals, as are crash
directories not owned by root when that is required (apport's rule against symlink and
ownership tricks in world-writable crash directories).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Candidate", "Refusal", "is_open_for_writing", "scan", "scan_spool"]

_DEBIAN_DIR = re.compile(r"^(?:(?P<host>.+)-)?(?P<stamp>\d{12})$")
_DEBIAN_DUMP = re.compile(r"^(?:dump|vmcore)\.(?P<stamp>\d{12})(?:\.(?:gz|xz|zst|bz2|lz4))?$")
_RHEL_DIR = re.compile(
    r"^(?P<host>.+)-(?P<date>\d{4}-\d{2}-\d{2})-(?P<time>\d{2}:\d{2}:\d{2})$"
)
_RHEL_DUMPS = ("vmcore", "vmcore.flat")
_INCOMPLETE = re.compile(r"(?:^|[-.])incomplete(?:$|[-.])")

# Bounds: a crash directory with more entries than this is not read further (a hostile or
# broken directory must not make the agent spin or exhaust memory).
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class Candidate:
    """A dump file found, with its companion kernel log when there is one.

    ``crash_time_hint`` comes from the directory name (local time of the crashed host, no
    zone) and is only a fallback for the dump's own crash time.
    """

    path: str
    layout: str  # "debian-kdump-tools", "rhel-kdump", "plain" or "spool"
    dmesg_path: str | None
    crash_time_hint: str | None
    host: str | None = None  # spool only: the host a dump is filed under


@dataclass(frozen=True)
class Refusal:
    """A file or directory the agent will not read, and why."""

    path: str
    reason: str


def _stamp_iso(stamp: str) -> str:
    return f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[8:10]}:{stamp[10:12]}:00"


def _entries(path: str) -> list[os.DirEntry[str]]:
    out: list[os.DirEntry[str]] = []
    with os.scandir(path) as it:
        for entry in it:
            out.append(entry)
            if len(out) >= MAX_ENTRIES:
                break
    return sorted(out, key=lambda e: e.name)


def _owner_ok(st: os.stat_result, require_root_owner: bool) -> bool:
    return not require_root_owner or st.st_uid == 0


def scan(root: str | Path, *, require_root_owner: bool = True) -> tuple[list[Candidate],
                                                                         list[Refusal]]:
    """Dumps that look finished (by name) below ``root``, and what was refused.

    Size stability and open writers are checked by the caller over time, not here.
    """
    root = str(root)
    found: list[Candidate] = []
    refused: list[Refusal] = []
    try:
        st = os.stat(root, follow_symlinks=False)
    except FileNotFoundError:
        return found, refused
    if stat.S_ISLNK(st.st_mode):
        return found, [Refusal(root, "watched directory is a symbolic link")]
    if not _owner_ok(st, require_root_owner):
        return found, [Refusal(root, f"watched directory owned by uid {st.st_uid}, not root")]

    for entry in _entries(root):
        if entry.is_symlink():
            refused.append(Refusal(entry.path, "symbolic link"))
            continue
        if entry.is_file(follow_symlinks=False):
            if entry.name in _RHEL_DUMPS:
                found.append(Candidate(entry.path, "plain", None, None))
            continue
        if not entry.is_dir(follow_symlinks=False):
            continue
        dst = entry.stat(follow_symlinks=False)
        if not _owner_ok(dst, require_root_owner):
            refused.append(Refusal(entry.path, f"crash directory owned by uid {dst.st_uid}, "
                                               "not root"))
            continue
        found_here, refused_here = _scan_crash_dir(entry.path, entry.name)
        found += found_here
        refused += refused_here
    return found, refused


def _scan_crash_dir(path: str, name: str) -> tuple[list[Candidate], list[Refusal]]:
    found: list[Candidate] = []
    refused: list[Refusal] = []
    try:
        entries = _entries(path)
    except OSError as exc:
        return found, [Refusal(path, f"cannot list: {exc.strerror}")]
    files: dict[str, os.DirEntry[str]] = {}
    for e in entries:
        if e.is_symlink():
            refused.append(Refusal(e.path, "symbolic link"))
        elif e.is_file(follow_symlinks=False):
            files[e.name] = e

    deb = _DEBIAN_DIR.match(name)
    rhel = _RHEL_DIR.match(name)
    if deb:
        stamp = deb.group("stamp")
        dmesg = files.get(f"dmesg.{stamp}")
        # Prefer makedumpfile's output; vmcore.<STAMP> is kdump-tools' fallback copy.
        dumps = sorted((n for n in files if (m := _DEBIAN_DUMP.match(n))
                        and m.group("stamp") == stamp),
                       key=lambda n: (not n.startswith("dump."), n))
        if dumps:
            found.append(Candidate(files[dumps[0]].path, "debian-kdump-tools",
                                   dmesg.path if dmesg else None, _stamp_iso(stamp)))
        return found, refused
    if rhel:
        dmesg = files.get("vmcore-dmesg.txt")
        for n in _RHEL_DUMPS:
            if n in files:
                hint = f"{rhel.group('date')}T{rhel.group('time')}"
                found.append(Candidate(files[n].path, "rhel-kdump",
                                       dmesg.path if dmesg else None, hint))
                break
        return found, refused
    for n in _RHEL_DUMPS:
        if n in files and not _INCOMPLETE.search(n):
            found.append(Candidate(files[n].path, "plain", None, None))
            break
    return found, refused


def is_open_for_writing(fd: int, path: str) -> bool:
    """True when some process has ``path`` open for writing.

    A read lease can only be taken on a file nobody has open for writing (fcntl(2),
    F_SETLEASE), which answers exactly this question; it needs the file's owner or
    CAP_LEASE. Without either, fall back to scanning ``/proc/*/fd`` (which sees only the
    processes we may inspect) — the size-stability rule and the incomplete-name rule remain.
    """
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EBUSY):
            return True
        return _proc_writers(path)
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    return False


def _proc_writers(path: str) -> bool:
    try:
        target = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    me = str(os.getpid())
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or pid == me:
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(f"{fd_dir}/{fd}")
                if (st.st_dev, st.st_ino) != (target.st_dev, target.st_ino):
                    continue
                flags = Path(f"/proc/{pid}/fdinfo/{fd}").read_text().split("flags:")[1].split()[0]
            except (OSError, IndexError):
                continue
            if int(flags, 8) & (os.O_WRONLY | os.O_RDWR):
                return True
    return False


_SPOOL_SKIP = re.compile(r"(\.(txt|json|log|tmp|part)$)|incomplete|^\.")


def scan_spool(root: str | Path) -> tuple[list[Candidate], list[Refusal]]:
    """The embedded pipeline's spool: every regular file directly in ``root`` or in a
    per-host subdirectory ``root/<host>/`` is a dump (names ending in .txt, .json, .log,
    .tmp, .part, hidden files and anything named incomplete are not). No links followed."""
    root = str(root)
    found: list[Candidate] = []
    refused: list[Refusal] = []
    if not os.path.isdir(root) or os.path.islink(root):
        return found, refused
    for entry in _entries(root):
        if entry.is_symlink():
            refused.append(Refusal(entry.path, "symbolic link"))
        elif entry.is_file(follow_symlinks=False):
            if not _SPOOL_SKIP.search(entry.name):
                found.append(Candidate(entry.path, "spool", None, None))
        elif entry.is_dir(follow_symlinks=False):
            for sub in _entries(entry.path):
                if sub.is_symlink():
                    refused.append(Refusal(sub.path, "symbolic link"))
                elif sub.is_file(follow_symlinks=False) and not _SPOOL_SKIP.search(sub.name):
                    found.append(Candidate(sub.path, "spool", None, None, host=entry.name))
    return found, refused
