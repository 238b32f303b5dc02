"""A debuginfod client: ``GET <url>/buildid/<hex>/debuginfo``, resumable, with timeouts.

Servers come from the configuration or, by the elfutils convention, the space-separated
``DEBUGINFOD_URLS`` environment variable; they are tried in order. A download goes to
``<download_dir>/<build-id>.part`` and is moved to the caller's work directory only when
complete (its length checked against Content-Length), so no reader ever sees a partial file; the
next attempt after an interruption resumes from the partial file with a ``Range`` request.
"""

from __future__ import annotations

import http.client
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from symbol_cache.errors import SourceUnavailable
from symbol_cache.sources.base import Wanted

__all__ = ["DebuginfodSource", "urls_from_env"]

_CHUNK = 1 << 20
_MAX_DOWNLOAD = 4 << 30


def urls_from_env(env: Mapping[str, str] | None = None) -> list[str]:
    """Server URLs from ``DEBUGINFOD_URLS`` (space-separated), without trailing slashes."""
    env = os.environ if env is None else env
    return [u.rstrip("/") for u in env.get("DEBUGINFOD_URLS", "").split() if u]


class DebuginfodSource:
    """Fetch vmlinux debug info by build-id. ``timeout_s`` bounds connecting and each read
    (seconds); ``on_bytes`` is called with the number of bytes received (for metrics)."""

    name = "debuginfod"

    def __init__(self, urls: Sequence[str], download_dir: Path, *, timeout_s: float = 30.0,
                 on_bytes: Callable[[int], None] | None = None):
        self.urls = [u.rstrip("/") for u in urls]
        self.download_dir = Path(download_dir)
        self.timeout_s = timeout_s
        self.on_bytes = on_bytes

    def fetch(self, wanted: Wanted, workdir: Path) -> Path | None:
        if not wanted.build_id:
            return None  # debuginfod indexes by build-id only
        errors: list[str] = []
        for url in self.urls:
            try:
                path = self._download(url, wanted.build_id, workdir)
            except SourceUnavailable as exc:
                errors.append(str(exc))
                continue
            if path is not None:
                return path
        if errors:
            raise SourceUnavailable(self.name, "; ".join(errors), build_id=wanted.build_id)
        return None

    def _download(self, url: str, build_id: str, workdir: Path) -> Path | None:
        dest = workdir / f"{build_id}.debuginfo"
        self.download_dir.mkdir(parents=True, exist_ok=True)
        part = self.download_dir / f"{build_id}.part"
        have = part.stat().st_size if part.exists() else 0
        req = urllib.request.Request(f"{url}/buildid/{build_id}/debuginfo")
        if have:
            req.add_header("Range", f"bytes={have}-")
        try:
            resp = urllib.request.urlopen(req, timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            if exc.code == 416 and have:  # our partial file is already complete or stale
                part.unlink()
                return self._download(url, build_id, workdir)
            raise SourceUnavailable(url, f"HTTP {exc.code}", build_id=build_id) from None
        except (urllib.error.URLError, OSError) as exc:
            raise SourceUnavailable(url, f"unreachable: {exc}", build_id=build_id) from None
        with resp:
            if resp.status == 200:
                have = 0  # server ignored the range: start over
            length = resp.headers.get("Content-Length")
            expected = have + int(length) if length is not None else None
            if expected is not None and expected > _MAX_DOWNLOAD:
                raise SourceUnavailable(url, f"refusing a {expected}-byte download",
                                        build_id=build_id)
            got = have
            try:
                with part.open("ab" if have else "wb") as out:
                    while True:
                        chunk = resp.read(_CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                        got += len(chunk)
                        if self.on_bytes:
                            self.on_bytes(len(chunk))
                        if got > _MAX_DOWNLOAD:
                            raise SourceUnavailable(url, "download exceeds the size limit",
                                                    build_id=build_id)
            except (OSError, http.client.HTTPException) as exc:
                raise SourceUnavailable(url, f"download interrupted after {got} bytes: {exc}",
                                        build_id=build_id) from None
        if expected is not None and got != expected:
            raise SourceUnavailable(url, f"download ended at {got} of {expected} bytes",
                                    build_id=build_id)
        shutil.move(part, dest)  # a rename on one filesystem
        return dest
