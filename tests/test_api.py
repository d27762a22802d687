"""The HTTP API of a real `credit-rating serve` process, on SQLite and on PostgreSQL.

One server per database for the whole module (starting one takes seconds), over the sample
district. Tests share it, so each works on years and institutions of its own: the supervisor's
flow owns 2022–2024, the dry runs 2026, the concurrent requests 2030–2033, the imports their
own new institutions; no test depends on another having run.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

import httpx
import openpyxl
import pandas as pd
import pytest
import yaml
from stdnum.cn import uscc as stdnum_uscc

from scoring.explain import Explanation
from scoring.inputs import validate_findings
from scoring.lift import lift
from scoring.rules import RULE_FILES
from scoring.shipped import RULES_DIR, SAMPLE_DIR, load_rules
from service.api import keys
from service.api.keys import Role
from service.core.database import writing
from tests.conftest import Live
from tests.servers import running_service

SAMPLE_FILES = [SAMPLE_DIR / "institutions.csv", SAMPLE_DIR / "findings.csv"]
PROBLEM = "application/problem+json"
PUBLIC_FIELDS = {"uscc", "name", "status", "score", "grade", "vetoed"}
FULL_FIELDS = PUBLIC_FIELDS | {"licence_no", "vetoes", "points", "risk", "risk_lower", "risk_upper"}
NOBODY = "52120111MJ0799999"  # + check character: valid, but no such institution
BAD_CODE = "52120111MJ0627485B"  # the sample's first code with a wrong check character


def code(first17: str) -> str:
    """The code with its check character, as python-stdnum (not the project) computes it."""
    return first17 + stdnum_uscc.calc_check_digit(first17)


@pytest.fixture
def http(live: Live) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.base, timeout=60) as client:
        yield client


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """An RFC 9457 problem with `status`: its media type, and the members the RFC defines."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["title"], str) and body["title"]
    if "detail" in body:
        assert isinstance(body["detail"], str)
    if status == 401:
        assert response.headers["www-authenticate"] == "ApiKey"
    return body


def compute(live: Live, http: httpx.Client, year: int) -> dict[str, Any]:
    snapshot: dict[str, Any] = ok(
        http.post(f"/v1/ratings/{year}", headers=live.as_("supervisor")), 201
    )
    return snapshot


def publish(live: Live, http: httpx.Client, year: int, **body: Any) -> httpx.Response:
    return http.post(
        f"/v1/ratings/{year}/publish", headers=live.as_("supervisor"), json=body or None
    )


def institutions_on_record(live: Live, http: httpx.Client) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = ok(
        http.get("/v1/institutions", params={"limit": 1000}, headers=live.as_("analyst"))
    )
    return found


# The supervisor's year ------------------------------------------------------------------------


def a_costly_finding(live: Live, http: httpx.Client, year: int) -> tuple[str, str, int]:
    """An institution, a finding that alone costs it points, and the points: (uscc, id, lost)."""
    rating = ok(http.get(f"/v1/ratings/{year}"))
    for row in rating["institutions"]:
        one = ok(http.get(f"/v1/ratings/{year}/{row['uscc']}", headers=live.as_("supervisor")))
        for indicator in one["explanation"]["indicators"]:
            if indicator["lost"] > 0 and len(indicator["findings"]) == 1:
                return row["uscc"], indicator["findings"][0]["finding_id"], indicator["lost"]
    raise AssertionError(f"no finding alone costs points in {year}")


def test_a_year_is_computed_published_explained_corrected_and_kept_in_history(
    live: Live, http: httpx.Client
) -> None:
    problem(http.get("/v1/ratings/2023"), 404)  # nothing published yet

    draft = compute(live, http, 2023)
    assert (draft["revision"], draft["status"], draft["published_at"]) == (1, "draft", None)
    problem(http.get("/v1/ratings/2023", params={"revision": 1}), 404)  # drafts are not public
    problem(http.get("/v1/ratings/2023", params={"revision": 1}, headers=live.as_("sharing")), 404)
    seen = ok(http.get("/v1/ratings/2023", params={"revision": 1}, headers=live.as_("analyst")))
    assert seen["snapshot"]["status"] == "draft"

    first = ok(publish(live, http, 2023))
    assert (first["revision"], first["status"]) == (1, "published")
    assert first["content_hash"] == draft["content_hash"]
    assert first["chain_hash"].startswith("sha256:")
    assert "already published" in problem(publish(live, http, 2023), 409)["detail"]

    # The published result: grades for everyone, more for keys that may see more.
    public = ok(http.get("/v1/ratings/2023"))
    on_record = {i["uscc"] for i in institutions_on_record(live, http)}
    assert public["snapshot"]["revision"] == 1
    assert {row["uscc"] for row in public["institutions"]} == on_record
    assert all(set(row) == PUBLIC_FIELDS for row in public["institutions"])
    scores = [row["score"] for row in public["institutions"]]
    assert scores == sorted(scores, reverse=True)
    for role in ("analyst", "sharing", "supervisor"):
        full = ok(http.get("/v1/ratings/2023", headers=live.as_(role)))
        assert all(set(row) == FULL_FIELDS for row in full["institutions"])
        assert all(len(row["points"]) == 28 for row in full["institutions"])
        assert all(sum(row["points"].values()) == row["score"] for row in full["institutions"])
        assert [{k: row[k] for k in PUBLIC_FIELDS} for row in full["institutions"]] == public[
            "institutions"
        ]

    # One institution: the explanation for supervisors and analysts only.
    uscc, finding_id, lost = a_costly_finding(live, http, 2023)
    before = ok(http.get(f"/v1/ratings/2023/{uscc}"))
    assert before["explanation"] is None and set(before["rating"]) == PUBLIC_FIELDS
    shared = ok(http.get(f"/v1/ratings/2023/{uscc}", headers=live.as_("sharing")))
    assert shared["explanation"] is None and set(shared["rating"]) == FULL_FIELDS
    explained = ok(http.get(f"/v1/ratings/2023/{uscc}", headers=live.as_("analyst")))
    explanation = explained["explanation"]
    assert (explanation["uscc"], explanation["year"]) == (uscc, 2023)
    assert explanation["score"] == explained["rating"]["score"] == before["rating"]["score"]
    assert explanation["rules_hash"] == first["rules_hash"]
    assert sum(i["kept"] for i in explanation["indicators"]) == explanation["score"]
    assert before.get("lift") is None and shared.get("lift") is None
    lifted = explained["lift"]  # what lifts it: the same advice the CLI prints
    assert lifted == lift(
        Explanation.model_validate(explanation), load_rules().in_force(2023).bands
    ).model_dump(mode="json")
    if lifted["next_grade"] is not None and not lifted["vetoed"]:
        assert lifted["points_missing"] > 0 and lifted["revocations"]
    problem(http.get(f"/v1/ratings/2023/{code(NOBODY)}"), 404)

    # A correction: revoke the finding, recompute, publish with a reason.
    revoked = ok(
        http.post(
            f"/v1/findings/{finding_id}/revoke",
            headers=live.as_("supervisor"),
            json={"reason": "复议撤销原检查结论"},
        )
    )
    assert (revoked["status"], revoked["revoked_by"]) == ("revoked", "test supervisor")
    assert revoked["revoke_reason"] == "复议撤销原检查结论" and revoked["revoked_at"]
    assert compute(live, http, 2023)["revision"] == 2
    assert "needs a reason" in problem(publish(live, http, 2023), 409)["detail"]
    corrected = ok(publish(live, http, 2023, reason="复议撤销原检查结论，更正评价结果"))
    assert (corrected["revision"], corrected["supersedes"]) == (2, 1)
    assert corrected["reason"] == "复议撤销原检查结论，更正评价结果"

    now = ok(http.get(f"/v1/ratings/2023/{uscc}"))
    assert now["snapshot"]["revision"] == 2
    assert now["rating"]["score"] == before["rating"]["score"] + lost
    old = ok(http.get(f"/v1/ratings/2023/{uscc}", params={"revision": 1}))
    assert (old["snapshot"]["revision"], old["rating"]) == (1, before["rating"])
    assert (
        ok(http.get("/v1/ratings/2023", params={"revision": 1}))["institutions"]
        == public["institutions"]
    )
    revisions = ok(http.get("/v1/ratings/2023/revisions", headers=live.as_("analyst")))
    assert [(r["revision"], r["status"]) for r in revisions] == [(1, "published"), (2, "published")]

    # History: the official grade of each year.
    for year in (2022, 2024):
        compute(live, http, year)
        ok(publish(live, http, year))
    history = ok(http.get(f"/v1/institutions/{uscc}/history"))
    assert [(h["year"], h["revision"]) for h in history] == [(2022, 1), (2023, 2), (2024, 1)]
    assert history[1]["score"] == now["rating"]["score"]
    assert history[1]["grade"] == now["rating"]["grade"]
    assert ok(http.get(f"/v1/institutions/{code(NOBODY)}/history")) == []


# Errors and access ---------------------------------------------------------------------------


def test_errors_are_rfc9457_problems_and_every_key_is_checked(
    live: Live, http: httpx.Client
) -> None:
    analyst, sharing, supervisor = (live.as_(r) for r in ("analyst", "sharing", "supervisor"))
    wrong = {"X-API-Key": "cr_" + "x" * 43}
    upload = {"files": ("institutions.csv", SAMPLE_FILES[0].read_bytes(), "text/csv")}

    # 401: no key, or a key that is not one, on every kind of protected route
    for method, path in [
        ("GET", "/v1/institutions"),
        ("GET", "/v1/findings"),
        ("GET", "/v1/findings/XQ-2023-0001"),
        ("POST", "/v1/ratings/2023"),
        ("POST", "/v1/ratings/2023/publish"),
        ("GET", "/v1/ratings/2023/revisions"),
        ("POST", "/v1/evaluate"),
    ]:
        problem(http.request(method, path), 401)
        problem(http.request(method, path, headers=wrong), 401)
    problem(http.post("/v1/imports", files=upload), 401)
    problem(http.get("/v1/rules", params={"year": 2023}, headers=wrong), 401)  # public, bad key
    problem(http.get("/v1/ratings/2023", headers=wrong), 401)

    # a revoked key stops working at once
    with writing(live.engine) as conn:
        temporary = keys.create(conn, role=Role.ANALYST, name="temporary")
    ok(http.get("/v1/findings", headers={"X-API-Key": temporary}))
    with writing(live.engine) as conn:
        key_id = max(k["id"] for k in keys.listing(conn) if k["name"] == "temporary")
        assert keys.revoke(conn, key_id=key_id)
    problem(http.get("/v1/findings", headers={"X-API-Key": temporary}), 401)

    # 403: a valid key without the role
    for headers, method, path, body in [
        (analyst, "POST", "/v1/ratings/2023", None),
        (analyst, "POST", "/v1/ratings/2023/publish", None),
        (analyst, "POST", "/v1/findings/XQ-2023-0001/revoke", {"reason": "x"}),
        (analyst, "POST", "/v1/institutions", None),
        (sharing, "GET", "/v1/findings", None),
        (sharing, "GET", "/v1/findings/XQ-2023-0001", None),
        (sharing, "GET", "/v1/institutions", None),
        (sharing, "GET", "/v1/ratings/2023/revisions", None),
        (sharing, "POST", "/v1/evaluate", {"year": 2023}),
        (sharing, "POST", "/v1/ratings/2023", None),
    ]:
        problem(http.request(method, path, headers=headers, json=body), 403)
    problem(http.post("/v1/imports", files=upload, headers=analyst), 403)

    # 404: nothing there
    problem(http.get("/v1/ratings/2099"), 404)
    problem(http.get(f"/v1/ratings/2099/{code(NOBODY)}"), 404)
    problem(http.post("/v1/ratings/2099/publish", headers=supervisor), 404)  # nothing computed
    problem(http.get(f"/v1/institutions/{code(NOBODY)}", headers=analyst), 404)
    problem(http.get("/v1/findings/XQ-NONE", headers=analyst), 404)
    problem(http.post("/v1/findings/XQ-NONE/revoke", headers=supervisor, json={"reason": "x"}), 404)
    problem(http.get("/v1/no-such-route"), 404)

    # 422: what the request models refuse, with the offending place named
    invalid = [
        ("GET", f"/v1/ratings/2023/{BAD_CODE}", None, ["path", "uscc"]),
        ("GET", f"/v1/institutions/{BAD_CODE}/history", None, ["path", "uscc"]),
        ("GET", "/v1/ratings/1999", None, ["path", "year"]),
        ("GET", "/v1/ratings/twenty", None, ["path", "year"]),
        ("GET", "/v1/ratings/2023?revision=0", None, ["query", "revision"]),
        ("GET", "/v1/rules", None, ["query", "year"]),
        ("POST", "/v1/ratings/2023/publish", {"reasn": "typo"}, ["body", "reasn"]),
        ("POST", "/v1/ratings/2023/publish", {"reason": ""}, ["body", "reason"]),
        ("POST", "/v1/ratings/2023", {"scale": "six"}, ["body", "scale"]),
        ("POST", "/v1/evaluate", {"year": 2023, "extra": 1}, ["body", "extra"]),
        ("POST", "/v1/evaluate", {"year": 1900}, ["body", "year"]),
    ]
    for method, path, body, where in invalid:
        found = problem(http.request(method, path, headers=supervisor, json=body), 422)
        assert any(e["loc"][: len(where)] == where for e in found["errors"]), (path, found)

    sample = "52120111MJ0627485A"
    finding = {"uscc": sample, "indicator": "refunds_per_contract", "occurred_on": "2025-05-01"}
    for bad in (
        {**finding, "uscc": BAD_CODE},
        {**finding, "indicator": "no_such_indicator"},
        {**finding, "count": 0},
        {**finding, "occurred_on": "2025-02-30"},
        {**finding, "finding_id": "#12"},
        {**finding, "severity": "high"},
    ):
        problem(http.post("/v1/findings", headers=supervisor, json=bad), 422)
    problem(
        http.post(
            "/v1/institutions",
            headers=supervisor,
            json={"uscc": BAD_CODE, "name": "x", "district_code": "120111", "licence_no": "x"},
        ),
        422,
    )
    assert (
        ok(http.get("/v1/findings", params={"uscc": sample, "year": 2025}, headers=analyst)) == []
    )


# Dry runs -----------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """YAML data as JSON data (dated keys as ISO text)."""
    if isinstance(value, dict):
        return {str(k) if isinstance(k, date) else k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value.isoformat() if isinstance(value, date) else value


def rules_documents() -> dict[str, Any]:
    return {
        name: plain(yaml.safe_load((RULES_DIR / name).read_text(encoding="utf-8")))
        for name in RULE_FILES
    }


def test_evaluate_returns_grade_changes_against_the_published_year_and_stores_nothing(
    live: Live, http: httpx.Client
) -> None:
    supervisor, analyst = live.as_("supervisor"), live.as_("analyst")
    x, y, z = (i["uscc"] for i in institutions_on_record(live, http)[:3])
    for uscc, indicator, count in [
        (x, "veto_major_accident", 1),  # D, whatever the score
        (y, "refunds_per_contract", 2),  # 980: A
        (z, "fees_per_policy", 1),  # 990: A
    ]:
        finding = {
            "uscc": uscc,
            "indicator": indicator,
            "occurred_on": "2026-04-01",
            "count": count,
        }
        ok(http.post("/v1/findings", headers=supervisor, json=finding), 201)
    compute(live, http, 2026)
    ok(publish(live, http, 2026))
    stored = [
        ok(http.get("/v1/ratings/2026/revisions", headers=analyst)),
        ok(http.get("/v1/findings", params={"year": 2026}, headers=analyst)),
        institutions_on_record(live, http),
    ]

    def evaluate(**body: Any) -> dict[str, Any]:
        result: dict[str, Any] = ok(
            http.post("/v1/evaluate", headers=analyst, json={"year": 2026, **body})
        )
        assert result["published_revision"] == 1
        assert result["changes"] == sum(c["changed"] for c in result["institutions"])
        return result

    def changed(result: dict[str, Any]) -> dict[str, tuple[str, str]]:
        return {
            c["uscc"]: (c["published_grade"], c["grade"])
            for c in result["institutions"]
            if c["changed"]
        }

    same = evaluate()
    assert changed(same) == {}
    assert all(c["score"] == c["published_score"] for c in same["institutions"])
    assert {c["uscc"] for c in same["institutions"]} >= {x, y, z}

    assert changed(evaluate(findings=[])) == {x: ("D", "A")}
    veto_y = {"uscc": y, "indicator": "veto_public_incident", "occurred_on": "2026-09-01"}
    assert changed(evaluate(findings=[veto_y])) == {x: ("D", "A"), y: ("A", "D")}
    assert changed(evaluate(findings=[{**veto_y, "status": "revoked"}])) == {x: ("D", "A")}
    five = evaluate(scale="five")
    assert five["scale"] == "five" and changed(five) == {x: ("D", "E")}

    # a candidate rule set under which only a perfect score is an A
    candidate = rules_documents()
    four = next(s for s in candidate["scales.yaml"]["scales"] if s["code"] == "four")
    bands = next(iter(four["bands"].values()))
    bands[0]["min"], bands[1]["max"] = 1000, 999
    stricter = evaluate(rules=candidate)
    assert changed(stricter) == {y: ("A", "B"), z: ("A", "B")}
    assert stricter["rules_hash"] != same["rules_hash"]
    # The same bands dated 2027 (as a calibration's candidate is): no change to 2026 unless
    # applied as of that day.
    dated = rules_documents()
    four = next(s for s in dated["scales.yaml"]["scales"] if s["code"] == "four")
    four["bands"]["2027-01-01"] = bands
    assert changed(evaluate(rules=dated)) == {}
    assert changed(evaluate(rules=dated, as_of="2027-01-01")) == {y: ("A", "B"), z: ("A", "B")}
    early = {"year": 2026, "rules": dated, "as_of": "2022-01-01"}
    problem(http.post("/v1/evaluate", headers=analyst, json=early), 422)
    broken = rules_documents()
    del broken["scales.yaml"]
    problem(http.post("/v1/evaluate", headers=analyst, json={"year": 2026, "rules": broken}), 422)
    # Over CREDIT_MAX_RULE_VALUES (10,000) dated values: refused before any rule is checked.
    huge = rules_documents()
    refunds = next(
        i for i in huge["indicators.yaml"]["indicators"] if i["code"] == "refunds_per_contract"
    )
    start = date(2030, 1, 1).toordinal()
    refunds["points"] |= {date.fromordinal(start + n).isoformat(): 100 for n in range(10_000)}
    refused = problem(
        http.post("/v1/evaluate", headers=analyst, json={"year": 2026, "rules": huge}), 422
    )
    assert "max_rule_values" in refused["detail"]
    unknown = {"uscc": code(NOBODY), "indicator": "fees_per_policy", "occurred_on": "2026-01-02"}
    problem(
        http.post("/v1/evaluate", headers=analyst, json={"year": 2026, "findings": [unknown]}), 404
    )

    assert [
        ok(http.get("/v1/ratings/2026/revisions", headers=analyst)),
        ok(http.get("/v1/findings", params={"year": 2026}, headers=analyst)),
        institutions_on_record(live, http),
    ] == stored


# Rules and operations ------------------------------------------------------------------------


def test_the_rules_in_force_list_28_indicators_with_references_and_provisional_marks(
    http: httpx.Client,
) -> None:
    rules = ok(http.get("/v1/rules", params={"year": 2023}))
    indicators = rules["indicators"]
    assert [i["number"] for i in indicators] == list(range(1, 29))
    assert sum(i["points"] for i in indicators) == 1000
    assert all(i["reference"] and i["title"] for i in indicators)
    assert {i["number"] for i in indicators if i["status"] == "provisional"} == set(range(19, 29))
    assert {i["status"] for i in indicators if i["number"] <= 18} == {"confirmed"}
    assert [v["status"] for v in rules["vetoes"]] == ["provisional"] * 3
    assert (rules["year"], rules["scale"]) == (2023, "four")
    assert [b["grade"] for b in rules["bands"]] == ["A", "B", "C", "D"]
    assert rules["rules_hash"].startswith("sha256:")
    five = ok(http.get("/v1/rules", params={"year": 2023, "scale": "five"}))
    assert [b["grade"] for b in five["bands"]] == ["A", "B", "C", "D", "E"]
    assert five["rules_hash"] != rules["rules_hash"]


def test_health_readiness_and_metrics_are_served(live: Live, http: httpx.Client) -> None:
    assert ok(http.get("/health")) == {"status": "ok"}
    assert ok(http.get("/ready")) == {"status": "ready"}
    assert ok(http.get("/ready", headers=live.as_("sharing"))) == {"status": "ready"}
    metrics = http.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'credit_http_requests_total{method="GET",route="/ready",status="200"}' in metrics.text
    assert "credit_http_request_seconds_bucket" in metrics.text
    schema = ok(http.get("/openapi.json"))
    assert "/v1/ratings/{year}/{uscc}" in schema["paths"]


# Imports and findings ------------------------------------------------------------------------


def csv_bytes(rows: list[dict[str, str]], *, bom: bool = False) -> bytes:
    header = ",".join(rows[0])
    lines = [header] + [",".join(row.values()) for row in rows]
    return (("\ufeff" if bom else "") + "\n".join(lines) + "\n").encode("utf-8")


def xlsx_bytes(rows: list[dict[str, str]]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(list(rows[0]))
    for row in rows:
        sheet.append(list(row.values()))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def institution(uscc: str, name: str) -> dict[str, str]:
    return {
        "uscc": uscc,
        "name": name,
        "district_code": "120111",
        "licence_no": f"教民112011170{uscc[-4:]}号",
        "address": "天津市西青区精武镇学府路1号",
        "status": "operating",
    }


def finding_row(finding_id: str, uscc: str, **changes: str) -> dict[str, str]:
    row = {
        "finding_id": finding_id,
        "uscc": uscc,
        "indicator": "refunds_per_contract",
        "occurred_on": "2027-06-01",
        "count": "2",
        "source": "complaint",
        "reference": "12345热线工单",
        "status": "active",
        "note": "未按合同约定退费（家长投诉）",
    }
    return {**row, **changes}


def test_imports_over_http_keep_chinese_text_and_store_all_or_nothing(
    live: Live, http: httpx.Client
) -> None:
    supervisor, analyst = live.as_("supervisor"), live.as_("analyst")
    first, second, third = (
        code("52120111MJ0700001"),
        code("52120111MJ0700002"),
        code("52120111MJ0700003"),
    )
    people = [
        institution(first, "天津市西青区新星文化培训学校"),
        institution(second, "天津市西青区“晨曦”培训学校"),
    ]
    found = [finding_row("IMP-1", first), finding_row("IMP-2", second, count="1")]
    extra = [{**finding_row("IMP-3", second), "occurred_on": "2027-07-01"}]
    files = [
        ("files", ("新机构.csv", csv_bytes(people, bom=True), "text/csv")),
        ("files", ("检查发现.csv", csv_bytes(found), "text/csv")),
        (
            "files",
            ("补充.json", json.dumps(extra, ensure_ascii=False).encode(), "application/json"),
        ),
    ]
    report = ok(http.post("/v1/imports", headers=supervisor, files=files))
    warnings = report.pop("warnings")
    assert report == {
        "institutions_added": 2,
        "institutions_updated": 0,
        "findings_added": 3,
        "findings_unchanged": 0,
        "inspections_added": 0,
        "inspections_unchanged": 0,
        "warnings_total": 2,
    }
    # MJ070000 has the GB 11714 check character 6 (Σ = 269, 269 mod 11 = 5, 11 − 5 = 6), so
    # both new codes (…MJ0700001…, …MJ0700002…) are stored with a warning, not refused.
    assert [(w["file"], w["row"], w["column"]) for w in warnings] == [
        ("新机构.csv", 2, "uscc"),
        ("新机构.csv", 3, "uscc"),
    ]
    assert all("GB 11714" in w["expected"] for w in warnings)
    stored = ok(http.get(f"/v1/institutions/{second}", headers=analyst))
    assert (
        stored["name"] == "天津市西青区“晨曦”培训学校"
        and stored["recorded_by"] == "test supervisor"
    )
    notes = ok(http.get("/v1/findings", params={"uscc": first}, headers=analyst))
    assert [(f["finding_id"], f["note"], f["reference"]) for f in notes] == [
        ("IMP-1", "未按合同约定退费（家长投诉）", "12345热线工单")
    ]
    again = ok(http.post("/v1/imports", headers=supervisor, files=files))
    assert (again["institutions_added"], again["findings_added"], again["findings_unchanged"]) == (
        0,
        0,
        3,
    )

    # an .xlsx workbook is read too
    sheet = [finding_row("IMP-4", first, occurred_on="2027-08-01", count="1")]
    book = ("files", ("整改.xlsx", xlsx_bytes(sheet), "application/octet-stream"))
    assert ok(http.post("/v1/imports", headers=supervisor, files=[book]))["findings_added"] == 1

    # one bad file: nothing from any file is stored, and every problem is listed
    before = ok(http.get("/v1/findings", params={"year": 2027}, headers=analyst))
    bad = [
        finding_row("IMP-5", third),
        finding_row("IMP-6", third, occurred_on="2027-02-30"),
        finding_row("IMP-7", third, indicator="refund_per_contract"),
    ]
    failed = problem(
        http.post(
            "/v1/imports",
            headers=supervisor,
            files=[
                (
                    "files",
                    (
                        "又一机构.csv",
                        csv_bytes([institution(third, "天津市西青区远航培训学校")]),
                        "text/csv",
                    ),
                ),
                ("files", ("坏数据.csv", csv_bytes(bad), "text/csv")),
            ],
        ),
        422,
    )
    located = {(e["file"], e["row"], e["column"]) for e in failed["errors"]}
    assert located == {("坏数据.csv", 3, "occurred_on"), ("坏数据.csv", 4, "indicator")}
    assert "nothing was stored" in failed["detail"]
    problem(http.get(f"/v1/institutions/{third}", headers=analyst), 404)
    assert ok(http.get("/v1/findings", params={"year": 2027}, headers=analyst)) == before

    # the same finding id with other content is a conflict, and stores nothing
    changed = [finding_row("IMP-8", first), finding_row("IMP-1", first, count="5")]
    conflict = problem(
        http.post(
            "/v1/imports",
            headers=supervisor,
            files=[("files", ("改.csv", csv_bytes(changed), "text/csv"))],
        ),
        409,
    )
    assert "IMP-1" in conflict["detail"]
    problem(http.get("/v1/findings/IMP-8", headers=analyst), 404)


def test_one_finding_is_checked_by_the_same_code_as_a_file_of_findings(
    live: Live, http: httpx.Client
) -> None:
    uscc = "52120111MJ0627485A"  # in the sample district
    finding = {"uscc": uscc, "indicator": "refunds_per_kontract", "occurred_on": "2023-05-06"}
    answer = problem(http.post("/v1/findings", headers=live.as_("supervisor"), json=finding), 422)
    [reported] = answer["errors"]
    raw = pd.DataFrame([finding], index=[1], dtype="str")
    _, problems = validate_findings(raw, file="x", rules=load_rules(), known_uscc=[uscc])
    [from_file] = problems
    assert (reported["column"], reported["value"]) == ("indicator", "refunds_per_kontract")
    assert (
        reported["expected"] == from_file.expected
        and "refunds_per_contract" in reported["expected"]
    )


def test_findings_are_recorded_and_revoked_with_a_reason_never_deleted(
    live: Live, http: httpx.Client
) -> None:
    supervisor, analyst = live.as_("supervisor"), live.as_("analyst")
    uscc = code("52120111MJ0700004")
    created = ok(
        http.post(
            "/v1/institutions",
            headers=supervisor,
            json=institution(uscc, "天津市西青区启明星培训学校"),
        ),
        201,
    )
    assert created["name"] == "天津市西青区启明星培训学校"
    body = {
        "uscc": uscc,
        "indicator": "training_hours_lawful",
        "occurred_on": "2028-03-04",
        "count": 2,
        "source": "inspection",
        "reference": "西青教查〔2028〕1号",
        "note": "周末20:30后仍在授课",
    }
    finding = ok(http.post("/v1/findings", headers=supervisor, json=body), 201)
    assert finding["status"] == "active" and finding["finding_id"].startswith("F-")
    assert ok(http.post("/v1/findings", headers=supervisor, json=body), 201) == finding  # no-op
    problem(http.post("/v1/findings", headers=supervisor, json={**body, "uscc": code(NOBODY)}), 404)

    path = f"/v1/findings/{finding['finding_id']}/revoke"
    problem(http.post(path, headers=supervisor, json={}), 422)
    problem(http.post(path, headers=supervisor, json={"reason": ""}), 422)
    problem(http.post(path, headers=supervisor, json={"reason": "x", "by": "someone"}), 422)
    revoked = ok(http.post(path, headers=supervisor, json={"reason": "当事人异议成立"}))
    assert revoked["status"] == "revoked" and revoked["revoke_reason"] == "当事人异议成立"
    assert revoked["revoked_by"] == "test supervisor" and revoked["revoked_at"]
    assert (
        "already revoked"
        in problem(http.post(path, headers=supervisor, json={"reason": "y"}), 409)["detail"]
    )
    listed = ok(
        http.get("/v1/findings", params={"uscc": uscc, "status": "revoked"}, headers=analyst)
    )
    assert [f["finding_id"] for f in listed] == [finding["finding_id"]]
    assert (
        ok(http.get("/v1/findings", params={"uscc": uscc, "status": "active"}, headers=analyst))
        == []
    )


# Concurrency --------------------------------------------------------------------------------


def all_at_once(requests: int, send: Callable[[httpx.Client, int], httpx.Response]) -> list[int]:
    """Send `requests` requests together, each from its own client; their status codes."""
    barrier = threading.Barrier(requests)

    def one(i: int) -> int:
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            return send(client, i).status_code

    with ThreadPoolExecutor(requests) as pool:
        return list(pool.map(one, range(requests)))


def test_concurrent_publishes_over_http_give_one_200_and_409_for_the_rest(
    live: Live, http: httpx.Client
) -> None:
    compute(live, http, 2030)
    url, headers = f"{live.base}/v1/ratings/2030/publish", live.as_("supervisor")
    statuses = all_at_once(8, lambda client, _: client.post(url, headers=headers))
    assert Counter(statuses) == {200: 1, 409: 7}
    revisions = ok(http.get("/v1/ratings/2030/revisions", headers=live.as_("analyst")))
    assert [(r["revision"], r["status"]) for r in revisions] == [(1, "published")]


def test_concurrent_computes_over_http_each_get_their_own_revision(
    live: Live, http: httpx.Client
) -> None:
    url, headers = f"{live.base}/v1/ratings/2031", live.as_("supervisor")
    statuses = all_at_once(8, lambda client, _: client.post(url, headers=headers))
    assert statuses == [201] * 8
    revisions = ok(http.get("/v1/ratings/2031/revisions", headers=live.as_("analyst")))
    assert sorted(r["revision"] for r in revisions) == list(range(1, 9))
    assert len({r["content_hash"] for r in revisions}) == 1


@pytest.mark.parametrize("live", ["postgresql"], indirect=True)  # the server shared above
def test_two_service_processes_on_one_postgresql_database_publish_a_year_once(
    live: Live, http: httpx.Client
) -> None:
    """Several instances share one PostgreSQL database: requests spread over two processes
    still number drafts apart and publish the year exactly once."""
    headers = live.as_("supervisor")
    with running_service(live.url) as second:
        bases = [live.base, second]
        computes = all_at_once(
            8, lambda client, i: client.post(f"{bases[i % 2]}/v1/ratings/2032", headers=headers)
        )
        assert computes == [201] * 8
        publishes = all_at_once(
            8,
            lambda client, i: client.post(
                f"{bases[i % 2]}/v1/ratings/2032/publish", headers=headers
            ),
        )
        assert Counter(publishes) == {200: 1, 409: 7}
        for base in bases:
            revisions = httpx.get(f"{base}/v1/ratings/2032/revisions", headers=headers).json()
            assert sorted(r["revision"] for r in revisions) == list(range(1, 9))
            assert sum(r["status"] == "published" for r in revisions) == 1


def test_a_crowd_of_reads_at_once_is_answered_in_full(live: Live, http: httpx.Client) -> None:
    """Far more requests at once than the thread pool has threads and the database pool has
    connections are each answered. Were a connection held from one thread-pool hop to the
    next, the requests holding every connection would wait for a thread while every thread
    waited for a connection, until the pool timed out with 500s."""
    compute(live, http, 2033)
    ok(publish(live, http, 2033))
    codes = [row["uscc"] for row in ok(http.get("/v1/ratings/2033"))["institutions"]]
    analyst = live.as_("analyst")
    crowd = 300

    async def send(client: httpx.AsyncClient, i: int) -> int:
        if i % 3 == 0:  # a query parameter of its own: never answered from memory
            url = f"/v1/ratings/2033/{codes[i % len(codes)]}"
            response = await client.get(url, params={"crowd": i})
        elif i % 3 == 1:
            response = await client.get("/v1/institutions", headers=analyst)
        else:
            response = await client.get("/v1/findings", headers=analyst, params={"limit": 5})
        return response.status_code

    async def all_together() -> list[int]:
        limits = httpx.Limits(max_connections=crowd)
        async with httpx.AsyncClient(base_url=live.base, timeout=120, limits=limits) as client:
            return list(await asyncio.gather(*(send(client, i) for i in range(crowd))))

    assert asyncio.run(all_together()) == [200] * crowd
