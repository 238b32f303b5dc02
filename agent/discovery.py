"""Finding finished dumps under a crash directory, for the layouts met in the field.

- Debian/Ubuntu kdump-tools: ``[<host>-]<STAMP>/dump.<STAMP>`` (STAMP = YYYYMMDDHHMM, optional
  compression suffix) with ``dmesg.<STAMP>``; written as ``dump-incomplete`` first; a
  ``vmcore.<STAMP>`` fallback when makedumpfile failed.
- RHEL/Fedora kdump: ``<ip>-<YYYY-MM-DD-HH:MM:SS>/vmcore`` (``vmcore.flat`` when flattened)
  with ``vmcore-dmesg.txt``; written as ``vmcore-incomplete`` / ``vmcore-dmesg-incomplete.txt``.
- A plain ``vmcore`` (or ``vmcore.flat``) file in the directory or one level below.

Nothing here follows a symbolic link: links are reported as refusals, as are crash
directories not owned by root when that is required (apport's rule against symlink and
ownership tricks in world-writable crash directories). Names are only looked at here; the
rules on the file itself (one link, owner, mode) are checked on the opened descriptor by
:mod:`agent.safeopen`. Directories are read through :class:`agent.listing.Lister`, whose
bounds cannot hide a dump behind junk.
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

from agent.listing import Lister

__all__ = ["Candidate", "Refusal", "is_open_for_writing", "scan", "scan_spool"]

_DEBIAN_DIR = re.compile(r"^(?:(?P<host>.+)-)?(?P<stamp>\d{12})$")
_DEBIAN_DUMP = re.compile(r"^(?:dump|vmcore)\.(?P<stamp>\d{12})(?:\.(?:gz|xz|zst|bz2|lz4))?$")
_RHEL_DIR = re.compile(
    r"^(?P<host>.+)-(?P<date>\d{4}-\d{2}-\d{2})-(?P<time>\d{2}:\d{2}:\d{2})$"
)
_RHEL_DUMPS = ("vmcore", "vmcore.flat")
_INCOMPLETE = re.compile(r"(?:^|[-.])incomplete(?:$|[-.])")
# Files of a crash directory worth a look (dumps and their kernel logs); the rest is junk.
_CRASH_FILE = re.compile(r"^(?:(?:dump|vmcore|dmesg)\.\d{12}(?:\.\w+)?|vmcore(?:\.flat)?"
                         r"|vmcore-dmesg\.txt)$")


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


def _top_wanted(e: os.DirEntry[str]) -> bool:
    if e.is_symlink():  # refused when it stands where a dump or a crash directory would
        return bool(e.name in _RHEL_DUMPS or _DEBIAN_DIR.match(e.name)
                    or _RHEL_DIR.match(e.name))
    return e.is_dir(follow_symlinks=False) or e.name in _RHEL_DUMPS


def _crash_file_wanted(e: os.DirEntry[str]) -> bool:
    return bool(_CRASH_FILE.match(e.name))


def _owner_ok(st: os.stat_result, require_root_owner: bool, owner_uid: int = 0) -> bool:
    return not require_root_owner or st.st_uid == owner_uid


def _owner_name(uid: int) -> str:
    return "root" if uid == 0 else f"uid {uid}"


def scan(root: str | Path, *, require_root_owner: bool = True, owner_uid: int = 0,
         lister: Lister | None = None) -> tuple[list[Candidate], list[Refusal]]:
    """Dumps that look finished (by name) below ``root``, and what was refused.

    Size stability and open writers are checked by the caller over time, not here. Pass the
    same ``lister`` scan after scan for its rotating cursor and its record of skips.
    """
    root = str(root)
    lister = lister or Lister()
    found: list[Candidate] = []
    refused: list[Refusal] = []
    try:
        st = os.stat(root, follow_symlinks=False)
    except FileNotFoundError:
        return found, refused
    if stat.S_ISLNK(st.st_mode):
        return found, [Refusal(root, "watched directory is a symbolic link")]
    if not _owner_ok(st, require_root_owner, owner_uid):
        return found, [Refusal(root, f"watched directory owned by uid {st.st_uid}, "
                                     f"not {_owner_name(owner_uid)}")]

    for entry in lister.entries(root, _top_wanted):
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
        if not _owner_ok(dst, require_root_owner, owner_uid):
            refused.append(Refusal(entry.path, f"crash directory owned by uid {dst.st_uid}, "
                                               f"not {_owner_name(owner_uid)}"))
            continue
        found_here, refused_here = _scan_crash_dir(entry.path, entry.name, lister)
        found += found_here
        refused += refused_here
    return found, refused


def _scan_crash_dir(path: str, name: str, lister: Lister) -> tuple[list[Candidate],
                                                                   list[Refusal]]:
    found: list[Candidate] = []
    refused: list[Refusal] = []
    try:
        entries = lister.entries(path, _crash_file_wanted)
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


def _spool_wanted(e: os.DirEntry[str]) -> bool:
    return not _SPOOL_SKIP.search(e.name)


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def scan_spool(root: str | Path, *, lister: Lister | None = None) -> tuple[list[Candidate],
                                                                           list[Refusal]]:
    """The embedded pipeline's spool: every regular file directly in ``root`` or in a
    per-host subdirectory ``root/<host>/`` is a dump (names ending in .txt, .json, .log,
    .tmp, .part, hidden files and anything named incomplete are not). No links followed.
    A host directory whose name is not UTF-8 is refused: its name would be the host's."""
    root = str(root)
    lister = lister or Lister()
    found: list[Candidate] = []
    refused: list[Refusal] = []
    if not os.path.isdir(root) or os.path.islink(root):
        return found, refused
    for entry in lister.entries(root, _spool_wanted):
        if entry.is_symlink():
            refused.append(Refusal(entry.path, "symbolic link"))
        elif entry.is_file(follow_symlinks=False):
            found.append(Candidate(entry.path, "spool", None, None))
        elif entry.is_dir(follow_symlinks=False):
            if not _utf8(entry.name):
                refused.append(Refusal(entry.path, "host directory name is not UTF-8"))
                continue
            try:
                subs = lister.entries(entry.path, _spool_wanted)
            except OSError as exc:
                refused.append(Refusal(entry.path, f"cannot list: {exc.strerror}"))
                continue
            for sub in subs:
                if sub.is_symlink():
                    refused.append(Refusal(sub.path, "symbolic link"))
                elif sub.is_file(follow_symlinks=False):
                    found.append(Candidate(sub.path, "spool", None, None, host=entry.name))
    return found, refused
