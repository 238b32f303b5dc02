"""Wiring the web UI from settings: the store from ``[store]`` (or an embedded run's data
directory), reports and dumps from ``[s3]`` (or the run's local object store), access rules
from ``[web]``; served by uvicorn."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from foundation.settings import Settings
from store import CrashStore

__all__ = ["build_web_app", "data_store", "serve_in_thread", "serve_web"]


def data_store(data: Path) -> CrashStore:
    """The store of an embedded run (``crashfleet run --data DIR``)."""
    return CrashStore(f"sqlite:///{(data / 'crashfleet.sqlite').resolve()}")


def build_web_app(settings: Settings, *, data: Path | None = None,
                  store: CrashStore | None = None, objects: Any = None) -> Any:
    """The ASGI app; ``data`` selects an embedded run's store and objects over the
    settings' ``[store]`` and ``[s3]``."""
    from web import create_app

    if store is None:
        if data is not None:
            store = data_store(data)
        else:
            from crashfleet.wiring.transport import store_url

            store = CrashStore(store_url(settings.store))
        store.migrate()
    if objects is None:
        if data is not None:
            from ingest.localstore import LocalObjectStore

            objects = LocalObjectStore(data / "objects")
        else:
            from ingest.s3 import S3ObjectStore

            objects = S3ObjectStore.from_settings(settings.s3)
    w = settings.web
    return create_app(store, objects=objects, token=w.token,
                      proxy_user_header=w.proxy_user_header, require_auth=w.require_auth,
                      report_suffix=settings.analyzer.report_suffix,
                      download_ttl_s=w.download_ttl_s)


def _server(app: Any, host: str, port: int) -> Any:
    import uvicorn

    # Proxy headers (X-Forwarded-Proto/For) are trusted from loopback only: a reverse proxy
    # on the same machine.
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                         access_log=False, proxy_headers=True,
                                         forwarded_allow_ips="127.0.0.1", server_header=False))


def serve_web(app: Any, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn's own handlers)."""
    _server(app, host, port).run()


def serve_in_thread(app: Any, host: str, port: int) -> Any:
    """Serve from a daemon thread (beside the embedded pipeline); returns the server (set
    ``should_exit`` to stop it)."""
    server = _server(app, host, port)
    threading.Thread(target=server.run, name="web", daemon=True).start()
    return server
