"""Secrets from credential files, refused when others could read or replace them.

A secret reaches crashfleet from the environment (``CRASHFLEET_*``, systemd's
``EnvironmentFile=`` or ``LoadCredential=``), from a file named by a ``*_file`` setting (read
here), or from boto3's own chain for S3 — never from the command line, where every user of
the host can read it in ``/proc/*/cmdline``. A credential file must be a regular file (no link
followed), owned by the process's user or root, and neither readable nor writable by group or
others (mode 0600 or 0400), as ssh and libpq require of their keys.
"""

from __future__ import annotations

import os
import stat

from foundation.errors import ConfigError

__all__ = ["read_secret_file"]

MAX_SECRET_BYTES = 64 * 1024


def read_secret_file(path: str, *, key: str) -> str:
    """The secret in ``path`` (the file's text, without the final line break); ``key`` names
    the setting for the error message. The secret itself never appears in a message."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(f"credential file {path}: {exc.strerror}", key=key) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"credential file {path} is not a regular file", key=key)
        if st.st_uid not in (0, os.geteuid()):
            raise ConfigError(f"credential file {path} is owned by uid {st.st_uid}, not by "
                              "this user or root", key=key)
        if st.st_mode & 0o077:
            raise ConfigError(f"credential file {path} has mode {stat.S_IMODE(st.st_mode):04o}: "
                              "group or others may read or write it (want 0600 or 0400)",
                              key=key)
        raw = os.read(fd, MAX_SECRET_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_SECRET_BYTES:
        raise ConfigError(f"credential file {path} is larger than {MAX_SECRET_BYTES} bytes",
                          key=key)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"credential file {path} is not UTF-8 text", key=key) from exc
    return text.removesuffix("\n").removesuffix("\r")
