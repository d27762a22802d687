"""Published years served from memory, and whole years streamed in pages.

In process, on both databases: a year kept in memory is served only once a query begun after
the last commit confirmed it is the published revision, so a correction committed by another
process is seen by the very next lookup. Then the real service on both databases: a whole year
streams the very JSON the models wrote (anonymous, full view, and for a revision read from the
database), pages walk the whole year, bad cursors are refused, and a lookup answered from memory
is, byte for byte, the route's own answer, under the same access rules.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from scoring.shipped import load_rules
from service.api import keys
from service.api.caches.memory import ReadCache
from service.api.keys import Role
from service.api.published import GradeWriter, PublishedYears, risks
from service.api.schemas import GradeFull, GradePublic, RatingFull, RatingPublic, SnapshotPublic
from service.core import tables
from service.core.database import reading, writing
from service.core.settings import Settings
from service.core.tables import api_keys
from service.ratings import integrity, publishing, snapshots
from service.ratings.publicity import publicity
from tests.conftest import Live

YEAR = 2023
RULES = load_rules()


def _compute_and_publish(engine: Engine, reason: str | None = None) -> snapshots.Snapshot:
    with writing(engine) as conn:
        publishing.compute_draft(conn, rules=RULES, year=YEAR, scale="four", by="tests")
    with writing(engine) as conn:
        return publishing.publish(conn, year=YEAR, revision=None, reason=reason, by="tests")


# --- in process ------------------------------------------------------------------------------


def test_a_kept_year_is_served_only_while_it_is_the_published_one(loaded: Engine) -> None:
    url = loaded.url.render_as_string(hide_password=False)
    first = _compute_and_publish(loaded)

    async def scenario() -> None:
        cache = ReadCache(url.replace("postgresql+psycopg://", "postgresql://"))
        years = PublishedYears(loaded, budget=256 * 2**20)
        try:
            generation = await cache.generation()
            assert generation is not None
            kept = await years.get(YEAR, generation)
            assert kept is not None and kept.snapshot.id == first.id
            assert await years.get(YEAR, generation) is kept  # no query: the same generation
            code = kept.rows[0]["uscc"]
            with reading(loaded) as conn:
                stored = snapshots.row_of(conn, first, code)
            assert years.explanation(kept, code) == stored["explanation"]
            assert {k: kept.by_uscc[code][k] for k in snapshots.GRADE_COLUMNS} == {
                k: stored[k] for k in snapshots.GRADE_COLUMNS
            }
            # A correction, committed by another connection (as another process would)
            correction = _compute_and_publish(loaded, reason="复核更正")
            generation = await cache.generation()
            again = await years.get(YEAR, generation)
            assert again is not None and again.snapshot.id == correction.id
            assert again.snapshot.revision == first.revision + 1
            assert await years.get(YEAR, None) is None  # no commit check: nothing from memory
        finally:
            await cache.close()

    asyncio.run(scenario())


def test_a_year_over_the_budget_is_never_kept(loaded: Engine) -> None:
    _compute_and_publish(loaded)
    years = PublishedYears(loaded, budget=1_000)
    assert asyncio.run(years.get(YEAR, 1)) is None
    assert PublishedYears(loaded, budget=0)._years == {}
    assert asyncio.run(PublishedYears(loaded, budget=0).get(YEAR, 1)) is None


def test_rows_are_written_as_the_models_write_them(loaded: Engine) -> None:
    snap = _compute_and_publish(loaded)
    with reading(loaded) as conn:
        rows = snapshots.grades_of(conn, snap)
    rows[0] = {**rows[0], "status": "suspended", "name": '引号"与\\反斜杠\n'}
    for row in rows:
        assert GradeWriter(False, None).row(row) == GradePublic.of(row).model_dump_json()
        assert GradeWriter(True, None).row(row) == GradeFull.of(row).model_dump_json()


# --- the real service ------------------------------------------------------------------------


@pytest.fixture
def http(live: Live) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.base, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def year(live: Live) -> snapshots.Snapshot:
    """2023 computed and published once for the module."""
    return _compute_and_publish(live.engine)


def _expected(live: Live, snap: snapshots.Snapshot, full: bool) -> bytes:
    """What the route answered before it streamed: the models' JSON."""
    with reading(live.engine) as conn:
        rows = snapshots.rows_of(conn, snap)
    meta = SnapshotPublic.of(snap, publicity(snap, Settings(database_url=live.url)))
    if full:
        graded = [GradeFull.of(r, k) for r, k in zip(rows, risks(None, rows), strict=True)]
        return RatingFull(snapshot=meta, institutions=graded).model_dump_json().encode()
    return (
        RatingPublic(snapshot=meta, institutions=[GradePublic.of(r) for r in rows])
        .model_dump_json()
        .encode()
    )


def test_a_whole_year_streams_the_json_it_always_sent(
    live: Live, http: httpx.Client, year: snapshots.Snapshot
) -> None:
    current = snapshots_published(live)
    for headers, full in [({}, False), (live.as_("analyst"), True), (live.as_("sharing"), True)]:
        answer = http.get(f"/v1/ratings/{YEAR}", headers=headers)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/json"
        assert answer.content == _expected(live, current, full)
        # a revision asked for by number is read from the database: the same bytes
        by_number = http.get(f"/v1/ratings/{YEAR}?revision={current.revision}", headers=headers)
        assert by_number.content == answer.content


def snapshots_published(live: Live) -> snapshots.Snapshot:
    with reading(live.engine) as conn:
        found = snapshots.published(conn, year=YEAR)
    assert found is not None
    return found


def test_pages_walk_the_whole_year(
    live: Live, http: httpx.Client, year: snapshots.Snapshot
) -> None:
    whole = http.get(f"/v1/ratings/{YEAR}", headers=live.as_("supervisor")).json()
    assert "next_cursor" not in whole  # the unpaginated shape is unchanged
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        query: dict[str, Any] = {"limit": 5} | ({"cursor": cursor} if cursor else {})
        page = http.get(f"/v1/ratings/{YEAR}", params=query, headers=live.as_("supervisor"))
        assert page.status_code == 200, page.text
        body = page.json()
        assert body["snapshot"] == whole["snapshot"]
        assert len(body["institutions"]) <= 5
        seen += body["institutions"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == whole["institutions"]
    assert pages == -(-len(seen) // 5)
    big = http.get(f"/v1/ratings/{YEAR}", params={"limit": 100_000}).json()
    assert big["next_cursor"] is None and len(big["institutions"]) == len(seen)


def test_bad_pages_are_refused(live: Live, http: httpx.Client, year: snapshots.Snapshot) -> None:
    path = f"/v1/ratings/{YEAR}"
    for params in [{"limit": 0}, {"limit": 100_001}, {"limit": "x"}, {"cursor": "x" * 201}]:
        assert http.get(path, params=params).status_code == 422, params
    for junk in ["!!!", "bm90IGpzb24", base64.urlsafe_b64encode(b'{"y":"2023"}').decode()]:
        refused = http.get(path, params={"cursor": junk.rstrip("=")})
        assert refused.status_code == 422, junk
        assert refused.headers["content-type"] == "application/problem+json"
    current = snapshots_published(live)
    other = {"y": YEAR, "r": current.revision + 50, "s": 900, "u": "52120101MJ0000000X"}
    stale = base64.urlsafe_b64encode(json.dumps(other).encode()).decode().rstrip("=")
    assert http.get(path, params={"cursor": stale}).status_code == 409


def test_a_cursor_from_before_a_correction_is_refused(
    live: Live, http: httpx.Client, year: snapshots.Snapshot
) -> None:
    first = http.get(f"/v1/ratings/{YEAR}", params={"limit": 3}).json()
    assert first["next_cursor"] is not None
    _compute_and_publish(live.engine, reason="复核更正")  # by another process
    stale = http.get(f"/v1/ratings/{YEAR}", params={"cursor": first["next_cursor"]})
    assert stale.status_code == 409
    fresh = http.get(f"/v1/ratings/{YEAR}", params={"limit": 3}).json()
    assert fresh["snapshot"]["revision"] > first["snapshot"]["revision"]


def test_a_lookup_from_memory_is_the_routes_answer(
    live: Live, http: httpx.Client, year: snapshots.Snapshot
) -> None:
    current = snapshots_published(live)
    codes = [r["uscc"] for r in http.get(f"/v1/ratings/{YEAR}").json()["institutions"]]
    for role in [None, "analyst", "supervisor", "sharing"]:
        headers = live.as_(role) if role else {}
        for code in codes:  # every one: with and without findings, vetoed
            fast = http.get(f"/v1/ratings/{YEAR}/{code}", headers=headers)
            # with ?revision=N the route answers (FastAPI, the database): the same bytes
            route = http.get(
                f"/v1/ratings/{YEAR}/{code}?revision={current.revision}", headers=headers
            )
            assert fast.status_code == route.status_code == 200
            assert fast.content == route.content
            assert fast.headers["content-type"] == route.headers["content-type"]
            explained = fast.json()["explanation"] is not None
            assert explained == (role in ("analyst", "supervisor"))


def test_a_snapshot_stored_whole_is_served_as_one_stored_in_parts(
    live: Live, http: httpx.Client, year: snapshots.Snapshot
) -> None:
    """Snapshots stored before migration 0007 hold each explanation whole: they verify, and a
    supervisor sees the same explanation and lift as from one stored in parts, from memory and
    from the route."""
    supervisor = live.as_("supervisor")
    codes = [r["uscc"] for r in http.get(f"/v1/ratings/{YEAR}").json()["institutions"]]
    in_parts = {c: http.get(f"/v1/ratings/{YEAR}/{c}", headers=supervisor).json() for c in codes}
    with writing(live.engine) as conn:  # a correction, stored as versions before 0007 stored it
        draft = publishing.compute_draft(conn, rules=RULES, year=YEAR, scale="four", by="tests")
        whole = [
            {**r, "explanation": snapshots.explained(draft, r).model_dump_json()}
            for r in snapshots.rows_of(conn, draft)
        ]
        for r in whole:
            conn.execute(
                tables.snapshot_rows.update()
                .where(tables.snapshot_rows.c.snapshot_id == draft.id)
                .where(tables.snapshot_rows.c.uscc == r["uscc"])
                .values(explanation=r["explanation"])
            )
        header = {**snapshots.as_dict(draft), "explanation_parts": None}
        conn.execute(
            tables.snapshots.update()
            .where(tables.snapshots.c.id == draft.id)
            .values(explanation_parts=None, content_hash=integrity.content_hash(header, whole))
        )
    with writing(live.engine) as conn:
        stored = publishing.publish(
            conn, year=YEAR, revision=draft.revision, reason="复核更正", by="tests"
        )
    assert stored.explanation_parts is None
    with reading(live.engine) as conn:
        assert integrity.check(conn).problems == []
    for code in codes:
        fast = http.get(f"/v1/ratings/{YEAR}/{code}", headers=supervisor)
        route = http.get(
            f"/v1/ratings/{YEAR}/{code}?revision={stored.revision}", headers=supervisor
        )
        assert fast.status_code == route.status_code == 200
        assert fast.content == route.content
        answer = fast.json()
        assert answer["snapshot"]["revision"] == stored.revision
        assert answer["explanation"] == in_parts[code]["explanation"]
        assert answer["lift"] == in_parts[code]["lift"]


def test_access_stays_as_strict_for_a_year_in_memory(
    live: Live, http: httpx.Client, year: snapshots.Snapshot
) -> None:
    code = http.get(f"/v1/ratings/{YEAR}").json()["institutions"][0]["uscc"]
    lookup = f"/v1/ratings/{YEAR}/{code}"
    assert http.get(lookup).status_code == 200  # the year is in memory
    assert http.get(lookup, headers={"X-API-Key": "not-a-key"}).status_code == 401
    with writing(live.engine) as conn:
        key = keys.create(conn, role=Role.SUPERVISOR, name="revoked soon")
        key_id = conn.execute(
            select(api_keys.c.id).where(api_keys.c.name == "revoked soon")
        ).scalar_one()
    assert http.get(lookup, headers={"X-API-Key": key}).json()["explanation"] is not None
    with writing(live.engine) as conn:
        assert keys.revoke(conn, key_id=key_id)
    assert http.get(lookup, headers={"X-API-Key": key}).status_code == 401
    assert http.get(f"/v1/ratings/{YEAR}/52120101MJ0000000X").status_code in (404, 422)


def test_a_correction_by_another_process_is_seen_by_the_next_lookup(
    live: Live, http: httpx.Client, year: snapshots.Snapshot
) -> None:
    code = http.get(f"/v1/ratings/{YEAR}").json()["institutions"][0]["uscc"]
    lookup = f"/v1/ratings/{YEAR}/{code}"
    before = http.get(lookup, headers=live.as_("supervisor")).json()
    assert http.get(lookup, headers=live.as_("analyst")).status_code == 200  # from memory
    correction = _compute_and_publish(live.engine, reason="复核更正")
    after = http.get(lookup, headers=live.as_("supervisor")).json()
    assert after["snapshot"]["revision"] == correction.revision > before["snapshot"]["revision"]
    assert after["snapshot"]["content_hash"] == correction.content_hash
    assert http.get(lookup).json()["snapshot"]["revision"] == correction.revision


def test_under_load_every_lookup_sent_after_a_correction_sees_it(
    live: Live, year: snapshots.Snapshot
) -> None:
    """Lookups from many clients at once, answered from memory while the commit check's
    readings are shared: every one sent after the correction was committed shows it."""
    codes = [r["uscc"] for r in httpx.get(f"{live.base}/v1/ratings/{YEAR}").json()["institutions"]]
    seen: list[tuple[float, int]] = []  # (when sent, the revision answered)
    stop = threading.Event()

    def client(number: int) -> None:
        with httpx.Client(base_url=live.base, timeout=60) as http:
            i = number
            while not stop.is_set():
                sent = time.monotonic()
                answer = http.get(f"/v1/ratings/{YEAR}/{codes[i % len(codes)]}")
                assert answer.status_code == 200
                seen.append((sent, answer.json()["snapshot"]["revision"]))
                i += 1

    with ThreadPoolExecutor(8) as pool:
        running = [pool.submit(client, n) for n in range(8)]
        time.sleep(0.5)
        correction = _compute_and_publish(live.engine, reason="复核更正")
        committed = time.monotonic()
        time.sleep(0.5)
        stop.set()
        for done in running:
            done.result()
    after = [revision for sent, revision in seen if sent > committed]
    assert len(after) > 10 and any(sent < committed for sent, _ in seen)
    assert set(after) == {correction.revision}


def test_rules_that_no_longer_rate_a_snapshot_give_no_lift_rather_than_an_error() -> None:
    """A snapshot's scale removed from the configured rules: its explanation is still shown,
    without what lifts it."""
    from dataclasses import replace as with_fields
    from datetime import UTC, datetime

    from scoring.shipped import load_rules
    from service.api.published import in_force
    from service.ratings.snapshots import Snapshot

    snap = Snapshot(1, 2023, 1, "published", "four", "v", "h", "d", "c",
                    datetime(2024, 1, 1, tzinfo=UTC), "t", None, None, None, None, None, None,
                    None)  # fmt: skip
    assert in_force(load_rules(), snap) is not None
    assert in_force(load_rules(), with_fields(snap, scale="seven")) is None
