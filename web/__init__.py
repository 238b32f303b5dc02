"""The triage web UI and JSON API: clusters, one cluster, one crash, one host; server-rendered
(Jinja2, autoescaped) with the same data under ``/api/v1``. Built by :func:`create_app` from
its dependencies; ``crashfleet web`` wires it from settings."""

from web.app import create_app

__all__ = ["create_app"]
