"""Single-flight across machines: a build lease as a create-if-absent object with an expiry.

The first process to create ``leases/<build-id>`` builds; the others wait for the pack. A lease
whose ``expires`` (Unix seconds, in the object's metadata) has passed belongs to a crashed
builder and is deleted and retaken. Without a conditional delete two waiters can both retake the
same stale lease; that costs one duplicate build of identical, content-addressed bytes, never a
wrong pack.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

from ingest.objectstore import ObjectStore
from symbol_cache._locks import expires_at

__all__ = ["BuildLease"]


class BuildLease:
    """The lease on one build-id; ``ttl_s`` in seconds."""

    def __init__(self, store: ObjectStore, build_id: str, *, ttl_s: float = 300.0,
                 clock: Callable[[], float] = time.time, prefix: str = "leases/"):
        self.store = store
        self.key = prefix + build_id
        self.ttl_s = ttl_s
        self.clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.held = False

    def try_acquire(self) -> bool:
        """True when this process now holds the lease."""
        for _ in range(2):
            meta = {"owner": self.owner, "expires": f"{self.clock() + self.ttl_s:.3f}"}
            if self.store.put_if_absent(self.key, self.owner.encode(), meta):
                self.held = True
                return True
            info = self.store.head(self.key)
            if info is None:
                continue  # released between our attempt and the head: try again
            if expires_at(info.metadata) > self.clock():
                return False
            self.store.delete(self.key)  # stale: its builder died
        return False

    def renew(self) -> None:
        """Push the expiry ``ttl_s`` into the future (only the holder calls this)."""
        if self.held:
            meta = {"owner": self.owner, "expires": f"{self.clock() + self.ttl_s:.3f}"}
            self.store.put(self.key, self.owner.encode(), meta)

    @contextlib.contextmanager
    def kept_alive(self) -> Iterator[None]:
        """Renew the held lease every ``ttl_s / 3`` seconds until the block ends, so a slow
        download or build is not mistaken for a dead builder."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(self.ttl_s / 3):
                with contextlib.suppress(Exception):  # a missed renewal is retried next time
                    self.renew()

        thread = threading.Thread(target=loop, name=f"lease-{self.key}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def release(self) -> None:
        if self.held:
            self.store.delete(self.key)
            self.held = False
