"""The JSON API (``/api/v1``): the pages' data as plain JSON strings and numbers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from foundation.timefmt import iso_utc
from store.triage import TriageError, TriageState
from store.views import (
    ClusterQuery,
    ClusterSummary,
    CrashEntry,
    cluster_detail,
    crash_entry,
    list_clusters,
)
from web.models import ClusterDetailOut, ClusterListOut, CrashWithReportOut, TriageOut
from web.pages import ClusterId, EventId, ctx_of
from web.params import cluster_params

__all__ = ["router"]

router = APIRouter(tags=["crashes"])


def _t(value: Any) -> str | None:
    return iso_utc(value) if value is not None else None


def triage_json(t: TriageState) -> dict[str, Any]:
    return {"state": t.state, "fixed_in": t.fixed_in, "note": t.note, "who": t.who,
            "updated_at": _t(t.updated_at), "regressed": t.regressed,
            "regressed_at": _t(t.regressed_at), "regressed_kernel": t.regressed_kernel}


def cluster_json(c: ClusterSummary) -> dict[str, Any]:
    return {
        "id": c.id, "title": c.title, "signature": c.signature, "panic_class": c.panic_class,
        "taint": c.taint, "findings": list(c.findings), "arches": list(c.arches),
        "count": c.count,
        "window_count": c.window_count, "previous_window_count": c.previous_count,
        "hosts": c.hosts, "kernels": c.kernels, "first_kernel": c.first_kernel,
        "last_kernel": c.last_kernel, "first_seen": _t(c.first_seen),
        "last_seen": _t(c.last_seen), "new": c.new, "rising": c.rising,
        "regressed": c.regressed, "triage": triage_json(c.triage),
        "daily": [[d.isoformat(), n] for d, n in c.daily],
    }


def crash_json(c: CrashEntry) -> dict[str, Any]:
    return {
        "event_id": c.event_id, "cluster_id": c.cluster_id, "host": c.host,
        "machine_id": c.machine_id, "kernel": c.kernel, "arch": c.arch, "build_id": c.build_id,
        "crash_time": _t(c.crash_time), "analyzed_at": _t(c.analyzed_at),
        "signature_id": c.signature_id, "signature": c.signature, "title": c.title,
        "panic_class": c.panic_class, "taint": c.taint, "findings": list(c.findings),
        "dump_key": c.dump_key, "report_key": c.report_key, "partial": c.partial,
        "explanation": _explanation(c.explanation),
    }


def _explanation(raw: str | None) -> Any:
    import json

    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


@router.get("/clusters", summary="Clusters, filtered, sorted and paginated",
            response_model=ClusterListOut)
def clusters(request: Request,
             query: Annotated[ClusterQuery, Depends(cluster_params)]) -> dict[str, Any]:
    ctx = ctx_of(request)
    page = list_clusters(ctx.store.engine, query, now=ctx.clock())
    return {"total": page.total, "page": query.page, "per_page": query.per_page,
            "window": query.window, "since": page.since.isoformat() if page.since else None,
            "clusters": [cluster_json(c) for c in page.rows]}


@router.get("/clusters/{cluster_id}", summary="One cluster with its facets and crashes",
            response_model=ClusterDetailOut)
def cluster(request: Request, cluster_id: ClusterId,
            limit: Annotated[int, Query(ge=1, le=1000)] = 100,
            offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> dict[str, Any]:
    ctx = ctx_of(request)
    d = cluster_detail(ctx.store.engine, cluster_id, crash_limit=limit, crash_offset=offset,
                       now=ctx.clock())
    if d is None:
        raise HTTPException(404, f"no cluster {cluster_id}")
    return {**cluster_json(d.summary),
            "facets": {k: [[v, n] for v, n in rows] for k, rows in d.facets.items()},
            "facet_totals": d.facet_totals,
            "signatures": [{"id": i, "text": t, "count": n} for i, t, n in d.signatures],
            "similar": [{"id": s.id, "title": s.title, "count": s.count, "score": score}
                        for s, score in d.similar],
            "explanation": _explanation(d.explanation),
            "explanation_event_id": d.explanation_event if d.explanation else None,
            "crashes": [crash_json(c) for c in d.crashes], "more_crashes": d.more_crashes}


@router.get("/crashes/{event_id}", summary="One crash with its stored report",
            response_model=CrashWithReportOut)
def crash(request: Request, event_id: EventId) -> dict[str, Any]:
    ctx = ctx_of(request)
    c = crash_entry(ctx.store.engine, event_id)
    if c is None:
        raise HTTPException(404, f"no crash {event_id}")
    story = ctx.stories.story(c)
    return {**crash_json(c), "report": story.report, "report_error": story.report_error}


class TriageChange(BaseModel):
    state: str = Field(pattern=r"^(open|fixed|ignored)$")
    fixed_in: str | None = Field(default=None, max_length=128)
    note: str = Field(default="", max_length=2000)
    who: str = Field(default="", max_length=255)


@router.post("/clusters/{cluster_id}/triage", summary="Set a cluster's triage state",
             response_model=TriageOut)
def set_triage(request: Request, cluster_id: ClusterId,
               change: Annotated[TriageChange, Body()]) -> dict[str, Any]:
    ctx = ctx_of(request)
    user = ctx.access.check_change(request.headers, host_url=str(request.base_url))
    who = user if user and user != "token" else (change.who.strip() or "anonymous")
    try:
        done = ctx.store.set_triage(cluster_id, change.state, fixed_in=change.fixed_in,
                                    note=change.note, who=who, now=ctx.clock())
    except TriageError as exc:
        raise HTTPException(400, str(exc)) from exc
    if done is None:
        raise HTTPException(404, f"no cluster {cluster_id}")
    return triage_json(done)
