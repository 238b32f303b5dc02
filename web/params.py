"""Query parameters shared by the pages and the API, validated by FastAPI: a bad value is a
422 with a message naming the parameter, never a 500."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Query

from store.views import ClusterQuery

__all__ = ["ClusterParams", "cluster_params"]

Window = Literal["1d", "7d", "30d", "90d", "365d", "all"]
Sort = Literal["count", "last_seen", "first_seen", "trend"]
State = Literal["open", "fixed", "ignored", "regressed", ""]
ClusterParams = ClusterQuery


def cluster_params(
    window: Annotated[Window, Query(description="time window of counts, sparkline, new/rising")]
    = "30d",
    kernel: Annotated[str | None, Query(max_length=128, description="kernel release")] = None,
    host: Annotated[str | None, Query(max_length=255, description="host name")] = None,
    module: Annotated[str | None, Query(max_length=128, description="module name")] = None,
    finding: Annotated[str | None, Query(pattern=r"^(?:[a-z][a-z0-9-]{0,63})?$",
                                         description="finding kind")] = None,
    taint: Annotated[str | None, Query(pattern=r"^[A-Z]?$", description="taint flag letter")]
    = None,
    arch: Annotated[str | None, Query(pattern=r"^[a-z0-9_]{0,16}$",
                                      description="architecture: x86_64, arm64")] = None,
    state: Annotated[State | None, Query(description="triage state")] = None,
    q: Annotated[str | None, Query(max_length=200, description="text in title or signature")]
    = None,
    sort: Annotated[Sort, Query(description="sort order")] = "count",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ClusterQuery:
    def blank(v: Any) -> Any:
        return v if v not in ("",) else None

    return ClusterQuery(window=window, kernel=blank(kernel), host=blank(host),
                        module=blank(module), finding=blank(finding), taint=blank(taint),
                        arch=blank(arch),
                        state=blank(state), q=blank(q), sort=sort, page=page, per_page=per_page)
