"""The JSON API's response models: what ``/api/v1`` returns, named in its OpenAPI schema.

Every text field holds host-derived text as a plain JSON string. Addresses inside a stored
report stay as the report has them (64-bit values as hex strings, which JSON numbers cannot
carry exactly); the report itself is passed through as an object. ``extra="forbid"``: a
field the routes add without declaring it here fails the API tests.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ClusterDetailOut", "ClusterListOut", "ClusterOut", "CrashOut", "CrashWithReportOut",
           "SignatureOut", "SimilarOut", "TriageOut"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TriageOut(_Out):
    """A cluster's triage state; times are ISO 8601 UTC."""

    state: str = Field(description="open, fixed or ignored")
    fixed_in: str | None = Field(description="kernel release the fix is in (state fixed)")
    note: str
    who: str
    updated_at: str | None
    regressed: bool = Field(description="fixed, and crashed again at or after fixed_in")
    regressed_at: str | None
    regressed_kernel: str | None


class ClusterOut(_Out):
    """One cluster of the list; counts are crashes."""

    id: str
    title: str
    signature: str
    panic_class: str
    taint: str = Field(description="taint letters")
    findings: list[str] = Field(description='"kind" or "kind(module)"')
    arches: list[str] = Field(description="architectures of its crashes, most crashes first")
    count: int = Field(description="all time")
    window_count: int
    previous_window_count: int
    hosts: int
    kernels: int
    first_kernel: str | None
    last_kernel: str | None
    first_seen: str
    last_seen: str
    new: bool
    rising: bool
    regressed: bool
    triage: TriageOut
    daily: list[tuple[str, int]] = Field(description="[ISO day, crashes] over the sparkline")


class ClusterListOut(_Out):
    total: int = Field(description="clusters matching the filters")
    page: int
    per_page: int
    window: str
    since: str | None = Field(description="first day of the window (None: all time)")
    clusters: list[ClusterOut]


class CrashOut(_Out):
    """One stored crash."""

    event_id: str
    cluster_id: str
    host: str
    machine_id: str
    kernel: str | None
    arch: str = Field(description="x86_64, arm64 or unknown")
    build_id: str | None
    crash_time: str | None
    analyzed_at: str
    signature_id: str
    signature: str
    title: str | None
    panic_class: str
    taint: str
    findings: list[dict[str, Any]]
    dump_key: str | None
    report_key: str | None
    partial: bool
    explanation: Any = Field(description="how the signature and title were made (JSON)")


class CrashWithReportOut(CrashOut):
    report: dict[str, Any] | None = Field(description="the stored report (None: unreadable)")
    report_error: str | None


class SignatureOut(_Out):
    id: str
    text: str
    count: int


class SimilarOut(_Out):
    id: str
    title: str
    count: int
    score: float = Field(description="0..1, frames alike (0.5 at least for equal findings)")


class ClusterDetailOut(ClusterOut):
    """One cluster: its facets (top values), signatures, similar clusters, a page of
    crashes, and the signature explanation of its newest crash."""

    facets: dict[str, list[tuple[str, int]]] = Field(
        description="kernel, host, taint, module, arch: [value, crashes], most first")
    facet_totals: dict[str, int] = Field(description="distinct values per facet")
    signatures: list[SignatureOut]
    similar: list[SimilarOut]
    explanation: Any = Field(description="how the newest crash's signature was made (JSON)")
    explanation_event_id: str | None
    crashes: list[CrashOut]
    more_crashes: bool = Field(description="whether older crashes follow this page (the "
                               "cluster's count includes crashes pruned by retention)")
