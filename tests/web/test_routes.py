"""Every page and endpoint through the ASGI test client, on a store filled through the write
path: filters, sorting, pagination, unknown ids, bad values (never a 500), triage changes and
their access rules, regressions, downloads, and hostile text."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest

from .conftest import (
    HOSTILE_COMM,
    HOSTILE_EXPLANATION,
    HOSTILE_HOST,
    HOSTILE_MODULE,
    NOW,
    NULL,
    NULL2,
    PAYLOAD_IMG,
    PAYLOAD_SCRIPT,
    SYSRQ,
    UAU,
    Filled,
    crash_record,
    report_for,
)

SAME = {"origin": "http://testserver"}


def ids(client: Any, query: str) -> list[str]:
    r = client.get("/api/v1/clusters?" + query)
    assert r.status_code == 200, r.text
    return [c["id"] for c in r.json()["clusters"]]


def test_clusters_window_new_and_rising(client: Any, filled: Filled) -> None:
    body = client.get("/api/v1/clusters?window=7d").json()
    by_id = {c["id"]: c for c in body["clusters"]}
    assert SYSRQ.id not in by_id  # two weeks ago
    uau = by_id[UAU.id]
    assert (uau["window_count"], uau["previous_window_count"], uau["count"]) == (5, 1, 6)
    assert uau["rising"] and not uau["new"]  # first seen 9 days ago
    assert by_id[NULL.id]["new"] and not by_id[NULL.id]["rising"]
    assert uau["hosts"] == 3 and uau["kernels"] == 2
    assert (uau["first_kernel"], uau["last_kernel"]) == ("5.10.0-32-cloud-amd64",
                                                         "6.1.0-56-cloud-amd64")
    assert len(uau["daily"]) == 7 and sum(n for _, n in uau["daily"]) == 5
    assert ids(client, "window=all")[0] == UAU.id  # sorted by count
    assert SYSRQ.id in ids(client, "window=all")


@pytest.mark.parametrize(("query", "expected"), [
    ("kernel=5.10.0-32-cloud-amd64", {UAU.id, SYSRQ.id}),
    ("host=db-1", {NULL.id}),
    ("module=vendor", {NULL.id, NULL2.id}),
    ("module=veeamsnap", {UAU.id}),
    ("finding=null-pointer-dereference", {NULL.id, NULL2.id}),
    ("taint=E", {UAU.id, NULL.id, NULL2.id, "evil"}),
    ("q=SYSRQ", {SYSRQ.id}),
    ("q=ring_read", {NULL2.id}),
    ("q=%25", set()),  # a literal %, not a wildcard
    ("q=sysrq_handle", {SYSRQ.id}),
    ("q=sysrq%25handle", set()),  # % would match the _ if it were a wildcard
    ("kernel=6.12.0-1-cloud-amd64&host=db-1", {NULL.id}),
    ("state=open&kernel=6.12.0-1-cloud-amd64", {NULL.id}),
    ("state=fixed", set()),
    ("kernel=&host=&module=&finding=&taint=&state=&q=", "all"),  # an empty filter form
])
def test_filters(client: Any, filled: Filled, query: str, expected: Any) -> None:
    got = set(ids(client, "window=all&" + query))
    if expected == "all":
        assert len(got) == 5
        return
    expected = {filled.hostile_cluster if e == "evil" else e for e in expected}
    assert got == expected


def test_sorts_and_pagination(client: Any, filled: Filled) -> None:
    assert ids(client, "window=all&sort=last_seen")[0] == filled.hostile_cluster
    assert ids(client, "window=all&sort=first_seen")[-1] == SYSRQ.id
    assert ids(client, "window=7d&sort=trend")[0] == UAU.id
    pages = [ids(client, f"window=all&per_page=2&page={p}") for p in (1, 2, 3, 4)]
    assert [len(p) for p in pages] == [2, 2, 1, 0]
    assert len({i for p in pages for i in p}) == 5
    body = client.get("/api/v1/clusters?window=all&per_page=2").json()
    assert body["total"] == 5 and body["per_page"] == 2
    html = client.get("/?window=all&per_page=2&page=2").text
    assert "page 2 of 3" in html and "page=3" in html and "page=1" in html


def test_pages_render(client: Any, filled: Filled) -> None:
    home = client.get("/")
    assert home.status_code == 200
    assert f'href="/clusters/{UAU.id}"' in home.text and "<svg class=\"spark\"" in home.text
    c = client.get(f"/clusters/{NULL.id}")
    assert c.status_code == 200
    for text in ("by kernel", "by host", "by taint set", "by module", "db-1",
                 "6.12.0-1-cloud-amd64", 'action="/clusters/', "similar clusters", NULL2.id):
        assert text in c.text, text
    crash = client.get("/crashes/n1")
    assert crash.status_code == 200
    assert 'class="oops"' in crash.text and "<details>" in crash.text  # log folded around
    assert "null-pointer-dereference" in crash.text and "the faulting address" in crash.text
    assert "out-of-tree module loaded" in crash.text and "last unloaded" in crash.text
    assert "JSON report" in crash.text and "unreliable" in crash.text
    host = client.get("/hosts/db-1")
    assert host.status_code == 200 and "3 crashes" in host.text


def test_api_cluster_and_crash(client: Any, filled: Filled) -> None:
    c = client.get(f"/api/v1/clusters/{UAU.id}?limit=2").json()
    assert c["count"] == 6 and len(c["crashes"]) == 2
    assert c["facets"]["kernel"] == [["6.1.0-56-cloud-amd64", 5], ["5.10.0-32-cloud-amd64", 1]]
    assert c["facet_totals"]["host"] == 3
    more = client.get(f"/api/v1/clusters/{UAU.id}?limit=2&offset=4").json()["crashes"]
    assert len(more) == 2
    crash = client.get("/api/v1/crashes/n1").json()
    assert crash["cluster_id"] == NULL.id and crash["report"]["task"]["comm"] == "insmod"
    schema = client.get("/api/v1/openapi.json").json()
    for path in ("/api/v1/clusters", "/api/v1/clusters/{cluster_id}",
                 "/api/v1/crashes/{event_id}"):
        assert path in schema["paths"]


@pytest.mark.parametrize("url", [
    "/clusters/0123456789abcdef", "/crashes/nope", "/hosts/nobody",
    "/api/v1/clusters/0123456789abcdef", "/api/v1/crashes/nope", "/no/such/page",
])
def test_unknown_ids_are_404(client: Any, url: str) -> None:
    r = client.get(url)
    assert r.status_code == 404
    if url.startswith("/api/"):
        assert r.json()["status"] == 404 and r.json()["error"]


@pytest.mark.parametrize(("query", "param"), [
    ("window=2d", "window"), ("sort=size", "sort"), ("page=0", "page"),
    ("per_page=1000", "per_page"), ("taint=EO", "taint"), ("finding=BAD!", "finding"),
    ("state=done", "state"), ("page=abc", "page"), ("q=" + "x" * 201, "q"),
])
def test_bad_values_are_422_with_a_message(client: Any, query: str, param: str) -> None:
    api = client.get("/api/v1/clusters?" + query)
    assert api.status_code == 422 and param in api.json()["error"]
    page = client.get("/?" + query)
    assert page.status_code == 422 and param in page.text


@pytest.mark.parametrize("url", [
    "/clusters/%00", "/clusters/a%2Fb", "/crashes/%2e%2e", "/hosts/%00%ff",
    "/hosts/" + "x" * 300, "/?q=%00%ff%fe", "/?kernel=%E2%80%AE", "/clusters/x?page=-1",
    "/api/v1/clusters?q=%27%22%3B--", "/crashes/" + "a" * 65, "/api/v1/clusters/%20",
    "/?window=all&sort=trend", "/?window=1d&sort=trend&state=regressed",
])
def test_odd_requests_never_500(client: Any, url: str) -> None:
    assert client.get(url).status_code < 500


def test_security_headers_everywhere(client: Any, filled: Filled) -> None:
    for url in ("/", f"/clusters/{UAU.id}", "/crashes/u1", "/api/v1/clusters", "/nope",
                "/static/style.css"):
        csp = client.get(url).headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "unsafe-eval" not in csp and "default-src 'none'" in csp


def test_triage_form_needs_same_origin(client: Any, filled: Filled) -> None:
    url = f"/clusters/{UAU.id}/triage"
    form = {"state": "ignored", "note": "known vendor bug", "who": "alice"}
    assert client.post(url, data=form).status_code == 403  # no Origin, no Referer
    assert client.post(url, data=form, headers={"origin": "http://evil.example"}
                       ).status_code == 403
    r = client.post(url, data=form, headers={"referer": "http://testserver/clusters/x"},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/clusters/{UAU.id}#triage"
    t = client.get(f"/api/v1/clusters/{UAU.id}").json()["triage"]
    assert (t["state"], t["note"], t["who"]) == ("ignored", "known vendor bug", "alice")
    assert set(ids(client, "window=all&state=ignored")) == {UAU.id}
    assert client.post(url, data={"state": "fixed"}, headers=SAME).status_code == 400
    assert client.post(url, data={"state": "gone"}, headers=SAME).status_code == 400
    assert client.post("/clusters/0123456789abcdef/triage", data=form,
                       headers=SAME).status_code == 404


def test_fixed_cluster_recurring_at_or_after_the_fix_is_regressed(
        client: Any, filled: Filled) -> None:
    r = client.post(f"/api/v1/clusters/{NULL.id}/triage", headers=SAME,
                    json={"state": "fixed", "fixed_in": "6.12.0-1-cloud-amd64", "who": "bob"})
    assert r.status_code == 200 and not r.json()["regressed"]
    # An older kernel crashing again is not a regression of a fix in a newer one.
    filled.store.record(crash_record("n4", NULL, host="db-9", kernel="6.1.0-56-cloud-amd64",
                                     at=NOW + timedelta(minutes=5)))
    assert not client.get(f"/api/v1/clusters/{NULL.id}").json()["regressed"]
    assert filled.store.stats().regressed == 0
    filled.store.record(crash_record("n5", NULL, host="db-9", kernel="6.12.0-2-cloud-amd64",
                                     at=NOW + timedelta(minutes=6)))
    c = client.get(f"/api/v1/clusters/{NULL.id}").json()
    assert c["regressed"] and c["triage"]["regressed_kernel"] == "6.12.0-2-cloud-amd64"
    assert ids(client, "window=all&state=regressed") == [NULL.id]
    assert "Regressed" in client.get(f"/clusters/{NULL.id}").text
    assert filled.store.stats().regressed == 1


def test_token_and_proxy_user(make_client: Callable[..., Any], filled: Filled) -> None:
    c = make_client(token="s3cret", proxy_user_header="X-Forwarded-User")
    url = f"/clusters/{UAU.id}/triage"
    form = {"state": "ignored", "who": "mallory"}
    assert c.get("/").status_code == 200  # reads stay open unless require_auth
    assert c.post(url, data=form, headers=SAME).status_code == 401
    assert c.post(url, data={**form, "token": "wrong"}, headers=SAME).status_code == 401
    assert c.post(url, data={**form, "token": "s3cret"}, headers=SAME,
                  follow_redirects=False).status_code == 303
    api = f"/api/v1/clusters/{UAU.id}/triage"
    # A script without Origin: only with the bearer token in its header.
    assert c.post(api, json={"state": "open"}).status_code == 403
    r = c.post(api, json={"state": "open", "who": "ci"},
               headers={"authorization": "Bearer s3cret"})
    assert r.status_code == 200 and r.json()["who"] == "ci"
    r = c.post(api, json={"state": "ignored", "who": "typed"},
               headers={**SAME, "x-forwarded-user": "carol"})
    assert r.status_code == 200 and r.json()["who"] == "carol"  # the proxy's name wins
    private = make_client(token="s3cret", require_auth=True)
    assert private.get("/").status_code == 401
    assert private.get("/api/v1/clusters").status_code == 401
    assert private.get("/", headers={"authorization": "Bearer s3cret"}).status_code == 200


def test_dump_download_local_and_presigned(make_client: Callable[..., Any],
                                           filled: Filled) -> None:
    filled.objects.put("dumps/d1", b"KDUMP" * 1000)
    filled.store.record(crash_record("d1", SYSRQ, dump_key="dumps/d1"))
    r = make_client().get("/crashes/d1/dump")
    assert r.status_code == 200 and r.content == b"KDUMP" * 1000
    assert "attachment" in r.headers["content-disposition"]
    assert make_client().get("/crashes/u1/dump").status_code == 404  # log-only: no dump
    locked = make_client(token="t0k")
    assert locked.get("/crashes/d1/dump").status_code == 401
    assert locked.get("/crashes/d1/dump", headers={"authorization": "Bearer t0k"}
                      ).status_code == 200
    # S3: a presigned URL, signed locally (no request reaches the endpoint).
    from fastapi.testclient import TestClient

    from ingest.s3 import S3ObjectStore
    from web import create_app

    s3 = S3ObjectStore("crashfleet", endpoint_url="http://127.0.0.1:9",
                       addressing_style="path")
    r = TestClient(create_app(filled.store, objects=s3, download_ttl_s=60)).get(
        "/crashes/d1/dump", follow_redirects=False)
    assert r.status_code == 307
    assert r.headers["location"].startswith("http://127.0.0.1:9/crashfleet/dumps/d1?")
    assert "Signature=" in r.headers["location"]


def test_hostile_text_is_escaped_in_html_and_plain_in_json(client: Any,
                                                           filled: Filled) -> None:
    pages = [client.get("/?window=all"), client.get(f"/clusters/{filled.hostile_cluster}"),
             client.get(f"/crashes/{filled.hostile_event}"),
             client.get("/hosts/" + quote(HOSTILE_HOST, safe=""))]
    for page in pages:
        assert page.status_code == 200, page.url
        html = page.text
        assert "<script>window" not in html and "<img src=x" not in html
        assert 'href="javascript:' not in html and "\x1b" not in html and "\x07" not in html
    crash_html = pages[2].text
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in crash_html
    assert "\\x1b[31mred" in crash_html  # ANSI escapes shown, not obeyed
    # Links carrying host text are percent-encoded path segments.
    assert 'href="/hosts/' + quote(HOSTILE_HOST, safe="") + '"' in crash_html
    api = client.get(f"/api/v1/crashes/{filled.hostile_event}").json()
    assert api["host"] == HOSTILE_HOST
    assert api["report"]["task"]["comm"] == HOSTILE_COMM
    assert api["report"]["modules"]["loaded"][0] == HOSTILE_MODULE
    assert api["report"]["title"] == f"{PAYLOAD_SCRIPT} in {PAYLOAD_IMG}"
    assert client.get(f"/api/v1/crashes/{filled.hostile_event}").headers[
        "content-type"].startswith("application/json")


def test_cluster_page_shows_the_newest_crash_explanation(client: Any, filled: Filled) -> None:
    page = client.get(f"/clusters/{filled.hostile_cluster}")
    assert page.status_code == 200
    html = page.text
    assert 'id="explanation"' in html and "signature explanation" in html
    assert f'href="/crashes/{filled.hostile_event}"' in html
    # The stored explanation's hostile frame and title, escaped, ANSI shown as text.
    assert "fn&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x" in html or "&quot;&gt;&lt;img src=x" in html
    assert "<script>window" not in html and "\x1b" not in html
    api = client.get(f"/api/v1/clusters/{filled.hostile_cluster}").json()
    assert api["explanation"] == HOSTILE_EXPLANATION
    assert api["explanation_event_id"] == filled.hostile_event
    # A cluster whose newest crash was stored without an explanation shows none.
    assert 'id="explanation"' not in client.get(f"/clusters/{NULL.id}").text
    assert client.get(f"/api/v1/clusters/{NULL.id}").json()["explanation"] is None


def test_openapi_names_the_response_models_and_responses_match_them(
        client: Any, filled: Filled) -> None:
    from web.models import ClusterDetailOut, ClusterListOut, CrashWithReportOut

    schema = client.get("/api/v1/openapi.json").json()
    components = schema["components"]["schemas"]
    for name in ("ClusterListOut", "ClusterOut", "ClusterDetailOut", "CrashOut",
                 "CrashWithReportOut", "TriageOut"):
        assert name in components, name
    for path, model in (("/api/v1/clusters", "ClusterListOut"),
                        ("/api/v1/clusters/{cluster_id}", "ClusterDetailOut"),
                        ("/api/v1/crashes/{event_id}", "CrashWithReportOut")):
        ok = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
        assert ok["schema"]["$ref"] == f"#/components/schemas/{model}"
    assert components["CrashOut"]["properties"]["arch"]["type"] == "string"
    # Real responses validate against the models (extra fields are refused).
    ClusterListOut.model_validate(client.get("/api/v1/clusters?window=all").json())
    for cid in (UAU.id, filled.hostile_cluster):
        ClusterDetailOut.model_validate(client.get(f"/api/v1/clusters/{cid}").json())
    # A report of version 2 holds 64-bit addresses as hex strings: they come back as
    # those strings (a JSON number would lose the low bits in most clients).
    report = report_for(NULL)
    report["version"] = 2
    report["findings"][0]["address"] = "0xffffffffc0000008"
    filled.objects.put("dumps/n1.dmesg.report.json", json.dumps(report).encode())
    for event in ("n1", filled.hostile_event):
        CrashWithReportOut.model_validate(client.get(f"/api/v1/crashes/{event}").json())
    crash = client.get("/api/v1/crashes/n1").json()
    assert crash["report"]["findings"][0]["address"] == "0xffffffffc0000008"


def test_arch_facet_badge_filter_and_histogram(client: Any, filled: Filled) -> None:
    assert ids(client, "window=all&arch=arm64") == [filled.hostile_cluster]
    assert filled.hostile_cluster not in ids(client, "window=all&arch=x86_64")
    assert set(ids(client, "window=all&arch=x86_64")) == {UAU.id, NULL.id, NULL2.id, SYSRQ.id}
    listing = client.get("/api/v1/clusters?window=all").json()["clusters"]
    assert {c["id"]: c["arches"] for c in listing}[filled.hostile_cluster] == ["arm64"]
    home = client.get("/?window=all&arch=arm64")
    assert home.status_code == 200 and '<span class="badge arch"' in home.text
    assert '<option value="arm64" selected>' in home.text
    detail = client.get(f"/api/v1/clusters/{UAU.id}").json()
    assert detail["facets"]["arch"] == [["x86_64", 6]]
    assert client.get(f"/api/v1/crashes/{filled.hostile_event}").json()["arch"] == "arm64"
    assert "by architecture" in client.get(f"/clusters/{UAU.id}").text
    assert client.get("/api/v1/clusters?arch=%3Cx%3E").status_code == 422
