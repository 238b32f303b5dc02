"""Opening a dump below a watched directory so that what is checked is what is read.

A crash directory is often world-writable (``/var/crash`` is mode 1777): anyone on the host
can put a symbolic link, a hard link to ``/etc/shadow``, a FIFO or their own file there, or
swap a checked name for another between a check and a read. So the file is reached from the
watched directory one component at a time, each opened relative to its parent's descriptor
with ``O_NOFOLLOW``, and every check is made with ``fstat`` on the descriptor that is then
read (no time-of-check/time-of-use gap):

- every directory on the way (the watched one included) is owned by the required owner and
  not writable by others unless sticky (in a sticky directory only the owner of an
  entry may rename or remove it);
- the file is a regular file with exactly one link (a hard link shares the inode of a file
  elsewhere), owned by the required owner and not writable by others.

The group is trusted (a user-private group makes 0664 files the norm under umask 002; a
crash directory's group is chosen by its administrator).

Refusal reasons name the rule that failed, never the file's contents.
"""

from __future__ import annotations

import errno
import os
import stat

from agent.errors import DumpRefused

__all__ = ["open_below", "root_of"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_FOREIGN_WRITE = stat.S_IWOTH


def _parts(root: str, path: str) -> list[str]:
    rel = os.path.relpath(path, root)
    parts = rel.split(os.sep)
    if os.path.isabs(rel) or any(p in ("", ".", "..") for p in parts):
        raise DumpRefused("outside the watched directory", path=path)
    return parts


def root_of(watch_dirs: tuple[str, ...], path: str) -> str:
    """The watched directory ``path`` lies below (the longest one); refused when none."""
    absolute = os.path.abspath(path)
    roots = [r for r in watch_dirs
             if os.path.commonpath([os.path.abspath(r), absolute]) == os.path.abspath(r)]
    if not roots:
        raise DumpRefused("outside the watched directories", path=path)
    return max(roots, key=len)


def _check_dir(st: os.stat_result, owner_uid: int | None, path: str) -> None:
    if owner_uid is not None and st.st_uid != owner_uid:
        raise DumpRefused(f"directory on the way owned by uid {st.st_uid}, not {owner_uid}",
                          path=path)
    if st.st_mode & _FOREIGN_WRITE and not st.st_mode & stat.S_ISVTX:
        raise DumpRefused("directory on the way writable by others and not sticky", path=path)


def _check_file(st: os.stat_result, owner_uid: int | None, path: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise DumpRefused("not a regular file", path=path)
    if st.st_nlink != 1:
        raise DumpRefused(f"hard link ({st.st_nlink} links)", path=path)
    if owner_uid is not None and st.st_uid != owner_uid:
        raise DumpRefused(f"owned by uid {st.st_uid}, not {owner_uid}", path=path)
    if st.st_mode & _FOREIGN_WRITE:
        raise DumpRefused("writable by others", path=path)


def open_below(root: str, path: str, *, owner_uid: int | None) -> int:
    """A read-only descriptor of ``path``, a file below the directory ``root``, reached
    without following any link and checked as the module says (``owner_uid`` None: no owner
    rule). Raises :class:`DumpRefused` when a rule fails, ``OSError`` when the file cannot be
    opened (``FileNotFoundError`` when it is gone)."""
    parts = _parts(root, path)

    def opened(name: str, flags: int, dir_fd: int | None) -> int:
        try:
            return os.open(name, flags, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise DumpRefused("symbolic link on the way", path=path) from exc
            raise

    fd = opened(root, _DIR_FLAGS, None)
    try:
        _check_dir(os.fstat(fd), owner_uid, path)
        for part in parts[:-1]:
            sub = opened(part, _DIR_FLAGS, fd)
            os.close(fd)
            fd = sub
            _check_dir(os.fstat(fd), owner_uid, path)
        file_fd = opened(parts[-1], _FILE_FLAGS, fd)
    finally:
        os.close(fd)
    try:
        _check_file(os.fstat(file_fd), owner_uid, path)
    except BaseException:
        os.close(file_fd)
        raise
    return file_fd
