"""The HTML pages: clusters (home), one cluster, one crash, one host; the triage form and the
dump download. Server-rendered and readable without JavaScript."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from store.triage import TriageError
from store.views import (
    ClusterQuery,
    cluster_detail,
    crash_entry,
    host_crashes,
    host_daily,
    list_clusters,
)
from web.params import cluster_params

__all__ = ["ctx_of", "router"]

router = APIRouter(include_in_schema=False)
_CHUNK = 1024 * 1024
ClusterId = Annotated[str, Path(max_length=64, pattern=r"^[0-9a-zA-Z_-]+$")]
EventId = Annotated[str, Path(max_length=64, pattern=r"^[0-9a-zA-Z_.:-]+$")]


def ctx_of(request: Request) -> Any:
    ctx = request.app.state.ctx
    ctx.access.check_read(request.headers)
    return ctx


@router.get("/", response_class=HTMLResponse)
def clusters_page(request: Request,
                  query: Annotated[ClusterQuery, Depends(cluster_params)]) -> Response:
    ctx = ctx_of(request)
    page = list_clusters(ctx.store.engine, query, now=ctx.clock())
    params = {k: getattr(query, k) for k in ("window", "kernel", "host", "module", "finding",
                                              "taint", "arch", "state", "q", "sort")}
    return ctx.render(request, "clusters.html", page=page, params=params,
                      pages=max(1, -(-page.total // query.per_page)))


@router.get("/clusters/{cluster_id}", response_class=HTMLResponse)
def cluster_page(request: Request, cluster_id: ClusterId,
                 page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> Response:
    ctx = ctx_of(request)
    per = 100
    detail = cluster_detail(ctx.store.engine, cluster_id, crash_limit=per,
                            crash_offset=(page - 1) * per, now=ctx.clock())
    if detail is None:
        raise HTTPException(404, f"no cluster {cluster_id}")
    return ctx.render(request, "cluster.html", d=detail, c=detail.summary, page=page,
                      more=detail.more_crashes,
                      auth=ctx.access.configured, token_needed=bool(ctx.access.token))


@router.post("/clusters/{cluster_id}/triage")
def triage_form(request: Request, cluster_id: ClusterId,
                state: Annotated[str, Form(max_length=16)],
                fixed_in: Annotated[str, Form(max_length=128)] = "",
                note: Annotated[str, Form(max_length=2000)] = "",
                who: Annotated[str, Form(max_length=255)] = "",
                token: Annotated[str, Form(max_length=512)] = "") -> Response:
    ctx = ctx_of(request)
    user = ctx.access.check_change(request.headers, host_url=str(request.base_url),
                                   form_token=token or None)
    if user and user != "token":
        who = user  # the proxy's name for the user wins over a typed one
    try:
        done = ctx.store.set_triage(cluster_id, state, fixed_in=fixed_in, note=note,
                                    who=who.strip() or "anonymous", now=ctx.clock())
    except TriageError as exc:
        raise HTTPException(400, str(exc)) from exc
    if done is None:
        raise HTTPException(404, f"no cluster {cluster_id}")
    return RedirectResponse(f"/clusters/{cluster_id}#triage", status_code=303)


@router.get("/crashes/{event_id}", response_class=HTMLResponse)
def crash_page(request: Request, event_id: EventId) -> Response:
    ctx = ctx_of(request)
    crash = crash_entry(ctx.store.engine, event_id)
    if crash is None:
        raise HTTPException(404, f"no crash {event_id}")
    story = ctx.stories.story(crash)
    return ctx.render(request, "crash.html", crash=crash, story=story, r=story.report or {},
                      triage=ctx.store.triage_state(crash.cluster_id))


@router.get("/crashes/{event_id}/dump")
def crash_dump(request: Request, event_id: EventId) -> Response:
    """The dump: a redirect to a presigned S3 URL, or the embedded store's file streamed."""
    ctx = ctx_of(request)
    ctx.access.check_download(request.headers)
    crash = crash_entry(ctx.store.engine, event_id)
    if crash is None:
        raise HTTPException(404, f"no crash {event_id}")
    if not crash.dump_key or ctx.objects is None:
        raise HTTPException(404, f"crash {event_id} has no stored dump")
    presign = getattr(ctx.objects, "presign_get", None)
    if presign is not None:
        return RedirectResponse(presign(crash.dump_key, ctx.download_ttl_s), status_code=307)
    info = ctx.objects.head(crash.dump_key)
    if info is None:
        raise HTTPException(404, f"dump {crash.dump_key} is missing from the object store")
    objects, key, size = ctx.objects, crash.dump_key, info.size

    def chunks() -> Iterator[bytes]:
        for start in range(0, size, _CHUNK):
            yield objects.get_range(key, start, min(_CHUNK, size - start))

    name = "".join(ch for ch in key.rsplit("/", 1)[-1] if ch.isalnum() or ch in "._-")[:100]
    return StreamingResponse(chunks(), media_type="application/octet-stream", headers={
        "content-length": str(size),
        "content-disposition": f'attachment; filename="{name or "vmcore"}"'})


@router.get("/hosts/{host:path}", response_class=HTMLResponse)
def host_page(request: Request, host: Annotated[str, Path(max_length=255)],
              page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> Response:
    ctx = ctx_of(request)
    per = 100
    total, rows = host_crashes(ctx.store.engine, host, limit=per, offset=(page - 1) * per)
    if total == 0:
        raise HTTPException(404, "no crashes from this host")
    daily = host_daily(ctx.store.engine, host, 90, ctx.clock())
    return ctx.render(request, "host.html", host=host, total=total, crashes=rows, page=page,
                      pages=max(1, -(-total // per)), daily=daily)
