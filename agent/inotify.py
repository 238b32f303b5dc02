"""Minimal inotify(7) through libc, used only as a wake-up: any change under a watched
directory triggers a rescan soon, so the agent reacts to a rename within a second while
the periodic rescan remains the source of truth."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select

__all__ = ["Inotify"]

IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
_MASK = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_ATTRIB | IN_DELETE
MAX_WATCHES = 4096  # crash directories are few; a bound keeps a hostile tree harmless


class Inotify:
    """Watches directories (not following links); ``wait`` returns True on any event."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.fd: int = fd
        self._watched: set[str] = set()

    def watch(self, path: str) -> bool:
        """Watch directory ``path``; False when that is impossible (gone, a link, too many)."""
        if path in self._watched:
            return True
        if len(self._watched) >= MAX_WATCHES:
            return False
        wd = self._add(self.fd, os.fsencode(path), _MASK | IN_ONLYDIR | IN_DONT_FOLLOW)
        if wd < 0:
            return False
        self._watched.add(path)
        return True

    def wait(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s``; True if events arrived (they are drained)."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout_s))
        if not ready:
            return False
        try:
            while os.read(self.fd, 64 * 1024):
                pass
        except BlockingIOError:
            pass
        return True

    def close(self) -> None:
        os.close(self.fd)
