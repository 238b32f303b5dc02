"""The web application: :func:`create_app` takes its dependencies as parameters (the shell
wires them from settings) and returns an ASGI app serving the pages, the JSON API under
``/api/v1`` with its OpenAPI schema, and the vendored static files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ingest.objectstore import ObjectStore
from store import CrashStore
from web.render import environment
from web.security import Access, AccessDenied, SecurityHeaders
from web.story import StoryReader

__all__ = ["WebContext", "create_app"]

STATIC = Path(__file__).parent / "static"


@dataclass
class WebContext:
    """What the routes use: the store, the object store (reports, logs, dumps), access
    rules, the template environment, a clock."""

    store: CrashStore
    objects: ObjectStore | None
    access: Access
    stories: StoryReader
    download_ttl_s: int
    clock: Callable[[], datetime]
    templates: Any

    def render(self, request: Request, name: str, status: int = 200,
               **values: Any) -> HTMLResponse:
        html = self.templates.get_template(name).render(request=request, now=self.clock(),
                                                        **values)
        return HTMLResponse(html, status_code=status)


def create_app(store: CrashStore, *, objects: ObjectStore | None = None,
               token: str = "", proxy_user_header: str = "", require_auth: bool = False,
               report_suffix: str = ".report.json", download_ttl_s: int = 300,
               clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> FastAPI:
    """The web UI over ``store``; reports, logs and dumps are read through ``objects``
    (S3 or the embedded local store; None: pages without them)."""
    from web import api, pages

    app = FastAPI(title="crashfleet", version="1",
                  description="Kernel crash clusters and crashes of a fleet: the triage "
                  "web UI's data as JSON.",
                  openapi_url="/api/v1/openapi.json", docs_url=None, redoc_url=None)
    ctx = WebContext(store=store, objects=objects,
                     access=Access(token, proxy_user_header, require_auth),
                     stories=StoryReader(objects, report_suffix=report_suffix),
                     download_ttl_s=download_ttl_s, clock=clock, templates=environment())
    app.state.ctx = ctx
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(pages.router)
    app.include_router(api.router, prefix="/api/v1")
    _error_handlers(app, ctx)
    return app


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _error(request: Request, ctx: WebContext, status: int, message: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": message, "status": status}, status_code=status)
    return ctx.render(request, "error.html", status=status, status_code=status,
                      message=message)


def _error_handlers(app: FastAPI, ctx: WebContext) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        parts = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ())[1:]) or "request"
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        if _wants_json(request):
            return JSONResponse({"error": "; ".join(parts), "status": 422,
                                 "detail": [{"loc": list(e.get("loc", ())),
                                             "msg": e.get("msg")} for e in exc.errors()]},
                                status_code=422)
        return _error(request, ctx, 422, "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _error(request, ctx, exc.status_code, str(exc.detail))

    @app.exception_handler(AccessDenied)
    async def denied(request: Request, exc: AccessDenied) -> Response:
        resp = _error(request, ctx, exc.status, str(exc))
        if exc.status == 401:
            resp.headers["www-authenticate"] = 'Bearer realm="crashfleet"'
        return resp
