"""Answers from memory are the route's own answers, and none outlives a commit.

First the middleware alone, in process, over a real SQLite file: which requests reach the
route and which are answered from memory. Then the real service on both databases (on
PostgreSQL nothing is kept, so the same assertions there say the cache changes no answer):
a correction, a revoked key, another key and a failure are each seen by the very next request.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi import FastAPI, Header, HTTPException
from fastapi.testclient import TestClient
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api import app as app_module
from service.api import keys
from service.api.app import create_app
from service.api.caches import memory, responses
from service.api.caches.memory import ReadCache
from service.api.caches.responses import ResponseCache, cached, cached_query
from service.api.keys import Role
from service.core.database import make_engine, writing
from service.core.settings import Settings
from service.core.tables import api_keys
from tests.conftest import Live
from tests.servers import ROOT, create_database, free_port
from tests.test_access import api_routes

# --- the middleware alone ----------------------------------------------------------------------


class Counting:
    """A tiny app behind the middleware, counting the requests that reach its routes."""

    client: TestClient

    def __init__(self, url: str) -> None:
        self.url = url
        self.calls = 0
        self.found = True
        self.commit_while_reading = False
        self.cache = ReadCache(url)

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            yield
            await self.cache.close()  # in the loop that opened its connection

        app = FastAPI(lifespan=lifespan)

        @app.get("/v1/kept/{name}")
        @cached(query=["q"])
        def kept(
            name: str, q: int | None = None, x_api_key: str | None = Header(None)
        ) -> dict[str, object]:
            self.calls += 1
            if not self.found:
                raise HTTPException(404, "gone")
            if self.commit_while_reading:
                commit_elsewhere(url)
            return {"name": name, "key": x_api_key, "call": self.calls}

        @app.get("/v1/kept-year/{year}")
        @cached(query=["revision"])
        def kept_year(year: int, revision: int | None = None) -> dict[str, object]:
            self.calls += 1
            return {"year": year, "revision": revision, "call": self.calls}

        @app.get("/v1/not-kept")
        def not_kept() -> dict[str, int]:
            self.calls += 1
            return {"call": self.calls}

        app.add_middleware(ResponseCache, cache=self.cache)
        app.add_middleware(AddsAHeader)
        self.app = app


class AddsAHeader:
    """An outer middleware that changes the start message it is given, as some do."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def add(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"].append((b"x-added", b"1"))
            await send(message)

        await self.app(scope, receive, add)


@pytest.fixture
def counting(database_url: str) -> Iterator[Counting]:
    """On both databases: each has its own way of telling that something was committed."""
    app = Counting(database_url)
    with TestClient(app.app) as client:  # one event loop for all the requests
        app.client = client
        yield app


def commit_elsewhere(url: str) -> None:
    """A commit through another connection, as another process or the service's writes make."""
    engine = make_engine(url)
    try:
        with writing(engine) as conn:
            keys.create(conn, role=Role.ANALYST, name="a commit")
    finally:
        engine.dispose()


def test_a_repeated_request_is_answered_from_memory_with_the_same_bytes(
    counting: Counting,
) -> None:
    # On PostgreSQL a commit anywhere on the server drops what is kept (another database's, or
    # an autovacuum's ANALYZE on the shared test server, included), as it must: so the three
    # requests are tried again, with another query, when such a commit fell between them.
    for q in range(1, 4):
        before = counting.calls
        first = counting.client.get(f"/v1/kept/甲?q={q}")
        again = counting.client.get(f"/v1/kept/甲?q={q}")
        third = counting.client.get(f"/v1/kept/甲?q={q}")  # kept is not what was changed outside
        if counting.calls == before + 1:
            break
    assert counting.calls == before + 1
    assert again.content == first.content
    assert again.headers == first.headers
    assert again.json() == {"name": "甲", "key": None, "call": before + 1}
    assert third.headers.get_list("x-added") == ["1"]


def test_path_query_and_key_each_make_another_request(counting: Counting) -> None:
    counting.client.get("/v1/kept/a")
    for variant in ("/v1/kept/b", "/v1/kept/a?q=1", "/v1/kept/a?q=2"):
        before = counting.calls
        assert counting.client.get(variant).json()["call"] == before + 1
    with_key = counting.client.get("/v1/kept/a", headers={"X-API-Key": "k1"})
    other_key = counting.client.get("/v1/kept/a", headers={"X-API-Key": "k2"})
    assert (with_key.json()["key"], other_key.json()["key"]) == ("k1", "k2")
    assert counting.calls == 6
    assert counting.client.get("/v1/kept/a", headers={"X-API-Key": "k1"}).json()["call"] == 5
    assert counting.client.get("/v1/kept/a").json()["call"] == 1
    assert counting.calls == 6


def test_any_commit_drops_every_answer(counting: Counting) -> None:
    counting.client.get("/v1/kept/a")
    counting.client.get("/v1/kept/a")
    assert counting.calls == 1
    commit_elsewhere(counting.url)
    assert counting.client.get("/v1/kept/a").json()["call"] == 2
    assert counting.client.get("/v1/kept/a").json()["call"] == 2


def test_a_commit_while_the_route_reads_drops_its_answer(counting: Counting) -> None:
    counting.commit_while_reading = True
    assert counting.client.get("/v1/kept/a").json()["call"] == 1
    counting.commit_while_reading = False
    assert counting.client.get("/v1/kept/a").json()["call"] == 2
    assert counting.client.get("/v1/kept/a").json()["call"] == 2


def test_junk_in_the_url_is_never_kept(counting: Counting) -> None:
    """Unknown query parameters (ignored by the route) and long URLs: each reaches the route."""
    for url in ("/v1/kept/a?junk=1", "/v1/kept/a?q=1&junk=", "/v1/kept/" + "a" * 600):
        before = counting.calls
        assert counting.client.get(url).status_code == 200
        assert counting.client.get(url).status_code == 200
        assert counting.calls == before + 2, url


def test_only_the_canonical_url_of_an_answer_is_kept(counting: Counting) -> None:
    """Each of these is answered as `/v1/kept-year/2023?revision=1` is, so each could be kept
    apart and a few thousand would push out everything kept: none is kept."""
    canonical = "/v1/kept-year/2023?revision=1"
    assert counting.client.get(canonical).json() == {"year": 2023, "revision": 1, "call": 1}
    assert counting.client.get(canonical).json()["call"] == 1
    for url in (
        "/v1/kept-year/00002023?revision=1",
        "/v1/kept-year/2023.000?revision=1",
        "/v1/kept-year/+2023?revision=1",
        "/v1/kept-year/2023?revision=0001",
        "/v1/kept-year/2023?revision=1.0",
        "/v1/kept-year/2023?revision=%31",
        "/v1/kept-year/2023?revision=1&revision=1",
        "/v1/kept-year/2023?revision=1&",
    ):
        before = counting.calls
        first = counting.client.get(url)
        assert first.status_code == 200, url
        assert (first.json()["year"], first.json()["revision"]) == (2023, 1), url
        assert counting.client.get(url).json()["call"] == before + 2, url
    assert counting.client.get(canonical).json()["call"] == 1  # the canonical one still kept
    counting.client.get("/v1/kept-year/2024")
    assert counting.client.get("/v1/kept-year/2024").json()["call"] == counting.calls


def test_only_successful_answers_of_marked_get_routes_are_kept(counting: Counting) -> None:
    counting.found = False
    assert counting.client.get("/v1/kept/a").status_code == 404
    counting.found = True
    assert counting.client.get("/v1/kept/a").status_code == 200
    assert counting.calls == 2
    counting.client.get("/v1/not-kept")
    counting.client.get("/v1/not-kept")
    assert counting.calls == 4
    assert counting.client.post("/v1/kept/a").status_code == 405


def test_memory_is_bounded(counting: Counting, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(responses, "OVERHEAD", 0)
    monkeypatch.setattr(memory, "MAX_BYTES", 70)  # two 32-byte answers, not three
    for name in ("a", "b", "a", "b"):
        counting.client.get(f"/v1/kept/{name}")
    assert counting.calls == 2
    counting.client.get("/v1/kept/c")  # over the budget: everything dropped, then c kept
    assert counting.client.get("/v1/kept/a").json()["call"] == 4
    assert counting.client.get("/v1/kept/c").json()["call"] == 3
    too_big = "/v1/kept/" + "x" * 80  # larger than the whole budget: never kept
    assert counting.client.get(too_big).json()["call"] == 5
    assert counting.client.get(too_big).json()["call"] == 6


# --- knowing that nothing was committed, on PostgreSQL -----------------------------------------


def test_postgresql_generation_changes_with_every_commit(postgres_admin: str) -> None:
    """Including commits of transactions already under way when the generation was read, in
    whatever order they end (an older one ending after a younger one leaves `xmax` as it was)."""
    url = create_database(postgres_admin)

    async def check() -> None:
        cache = ReadCache(url)
        with (
            psycopg.connect(url, autocommit=True) as older,
            psycopg.connect(url, autocommit=True) as younger,
        ):
            older.execute("CREATE TABLE t (n int)")
            first = await cache.generation()
            assert first is not None
            cache.put(first, "answer", 1)
            assert await cache.generation() == first and cache.get("answer") == 1

            with older.transaction():
                older.execute("INSERT INTO t VALUES (1)")  # given its id first
                with younger.transaction():
                    younger.execute("INSERT INTO t VALUES (2)")
                between = await cache.generation()  # the younger one ended, the older not
                assert between != first and cache.get("answer") is None
                cache.put(between, "answer", 2)
                assert cache.get("answer") == 2
            after = await cache.generation()
            assert after != between and cache.get("answer") is None
        await cache.close()

    asyncio.run(check())


def test_when_postgresql_cannot_be_asked_nothing_comes_from_memory(
    postgres_admin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = create_database(postgres_admin)
    monkeypatch.setattr(memory, "RECONNECT_AFTER_S", 0.0)

    async def check() -> None:
        nowhere = ReadCache(f"postgresql://nobody@127.0.0.1:{free_port()}/none")
        assert await nowhere.generation() is None
        nowhere.put(None, "answer", 1)
        assert nowhere.get("answer") is None

        cache = ReadCache(url)
        before = await cache.generation()
        cache.put(before, "answer", 1)
        with psycopg.connect(postgres_admin, autocommit=True) as admin:  # the check's session ends
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                [conninfo_to_dict(url)["dbname"]],
            )
        assert await cache.generation() is None
        assert cache.get("answer") is None
        again = await cache.generation()  # a new connection: a new series of versions
        assert again is not None and again != before
        await cache.close()

    asyncio.run(check())


def test_postgresql_readings_are_shared_but_none_begun_before_its_request(
    postgres_admin: str,
) -> None:
    """Requests that ask while a reading is in flight share the next one, which begins after
    they all asked: a commit completed before a request asked is seen by it, always."""
    url = create_database(postgres_admin)

    async def check() -> None:
        cache = ReadCache(url)
        original = cache._read_postgres_version
        begun: list[int] = []
        release = asyncio.Event()

        async def held(url: str) -> tuple[int, str] | None:
            begun.append(len(begun))
            version = await original(url)  # read now, answered only when released
            await release.wait()
            return version

        cache._read_postgres_version = held  # type: ignore[method-assign]
        with psycopg.connect(url, autocommit=True) as other:
            other.execute("CREATE TABLE t (n int)")
            release.set()
            before = await cache.generation()
            assert before is not None and begun == [0]
            release.clear()
            first = asyncio.create_task(cache.generation())
            await asyncio.sleep(0.2)  # its reading is done, not yet answered: in flight
            assert begun == [0, 1]
            other.execute("INSERT INTO t VALUES (1)")  # committed before the next ones ask
            later = [asyncio.create_task(cache.generation()) for _ in range(20)]
            await asyncio.sleep(0.05)
            assert begun == [0, 1]  # they wait for the reading in flight to end first
            release.set()
            assert await first == before  # begun before the commit
            answers = await asyncio.gather(*later)
            assert begun == [0, 1, 2]  # one reading for the twenty
            assert all(answer == answers[0] != before for answer in answers)
        await cache.close()

    asyncio.run(check())


def test_a_reading_in_flight_survives_a_request_given_up(postgres_admin: str) -> None:
    url = create_database(postgres_admin)

    async def check() -> None:
        cache = ReadCache(url)
        asked = [asyncio.create_task(cache.generation()) for _ in range(3)]
        await asyncio.sleep(0)
        asked[0].cancel()  # its client went away
        assert (await asyncio.gather(*asked[1:]))[0] is not None
        assert await cache.generation() is not None
        await cache.close()

    asyncio.run(check())


# --- the real service --------------------------------------------------------------------------

YEAR = 2022


@pytest.fixture
def http(live: Live) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.base, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def published(live: Live) -> str:
    """2022 computed and published once for the module; the first institution's code."""
    with httpx.Client(base_url=live.base, timeout=60) as client:
        supervisor = live.as_("supervisor")
        assert client.post(f"/v1/ratings/{YEAR}", headers=supervisor).status_code == 201
        assert client.post(f"/v1/ratings/{YEAR}/publish", headers=supervisor).status_code == 200
        uscc: str = client.get(f"/v1/ratings/{YEAR}").json()["institutions"][0]["uscc"]
    return uscc


def test_a_correction_is_seen_by_the_next_lookup(
    live: Live, http: httpx.Client, published: str
) -> None:
    lookup = f"/v1/ratings/{YEAR}/{published}"
    before = http.get(lookup)
    assert http.get(lookup).content == before.content
    revision = before.json()["snapshot"]["revision"]
    supervisor = live.as_("supervisor")
    assert http.post(f"/v1/ratings/{YEAR}", headers=supervisor).status_code == 201
    correction = http.post(
        f"/v1/ratings/{YEAR}/publish", headers=supervisor, json={"reason": "复核更正"}
    )
    assert correction.status_code == 200, correction.text
    assert http.get(lookup).json()["snapshot"]["revision"] == revision + 1
    assert http.get(f"/v1/ratings/{YEAR}").json()["snapshot"]["revision"] == revision + 1
    history = http.get(f"/v1/institutions/{published}/history").json()
    assert [h["revision"] for h in history if h["year"] == YEAR] == [revision + 1]


def test_a_key_revoked_by_another_process_is_refused_by_the_next_request(
    live: Live, http: httpx.Client, published: str
) -> None:
    with writing(live.engine) as conn:
        key = keys.create(conn, role=Role.ANALYST, name="soon revoked")
        key_id = conn.execute(
            select(api_keys.c.id).where(api_keys.c.name == "soon revoked")
        ).scalar_one()
    lookup = f"/v1/ratings/{YEAR}/{published}"
    for _ in range(2):
        answer = http.get(lookup, headers={"X-API-Key": key})
        assert answer.status_code == 200 and answer.json()["explanation"] is not None
    revoked = subprocess.run(
        [sys.executable, "-m", "service.cli", "keys", "revoke", str(key_id)],
        cwd=ROOT,
        env=os.environ | {"CREDIT_DATABASE_URL": live.url},
        capture_output=True,
        text=True,
        check=False,
    )
    assert revoked.returncode == 0, revoked.stderr
    assert http.get(lookup, headers={"X-API-Key": key}).status_code == 401


def test_a_route_refuses_a_key_revoked_before_the_request_it_remembered(
    live: Live, http: httpx.Client
) -> None:
    """A route's access rule looks the key up with the generation read for its request: a key
    remembered from earlier requests, revoked since, is refused."""
    with writing(live.engine) as conn:
        key = keys.create(conn, role=Role.ANALYST, name="revoked between requests")
        key_id = conn.execute(
            select(api_keys.c.id).where(api_keys.c.name == "revoked between requests")
        ).scalar_one()
    for _ in range(2):  # the second is answered with the key's holder from memory
        assert http.get("/v1/findings?limit=1", headers={"X-API-Key": key}).status_code == 200
    with writing(live.engine) as conn:
        assert keys.revoke(conn, key_id=key_id)
    assert http.get("/v1/findings?limit=1", headers={"X-API-Key": key}).status_code == 401


def test_each_caller_gets_the_answer_for_its_own_key(
    live: Live, http: httpx.Client, published: str
) -> None:
    lookup = f"/v1/ratings/{YEAR}/{published}"
    for _ in range(2):  # the second time round, every answer is one already given
        public = http.get(lookup).json()
        assert public["explanation"] is None and "points" not in public["rating"]
        explained = http.get(lookup, headers=live.as_("supervisor")).json()
        assert explained["explanation"]["uscc"] == published
        shared = http.get(lookup, headers=live.as_("sharing")).json()
        assert shared["explanation"] is None and "points" in shared["rating"]
        assert http.get(lookup, headers={"X-API-Key": "cr_not-a-key"}).status_code == 401


def test_answers_kept_give_the_garbage_collector_nothing_to_walk(counting: Counting) -> None:
    """Thousands of answers are kept under load: were each a few dicts and lists, a full
    collection would walk them all, a pause for every request under way."""
    for name in ("a", "b"):
        counting.client.get(f"/v1/kept/{name}", headers={"X-API-Key": "k"})
    kept = list(counting.cache._entries.values())
    assert kept
    gc.collect()  # tuples of untracked values are untracked by a collection that sees them
    assert not any(gc.is_tracked(entry) for entry in kept)
    again = counting.client.get("/v1/kept/a", headers={"X-API-Key": "k"})
    assert again.json()["call"] == 1 and again.headers.get_list("x-added") == ["1"]


def test_the_first_app_to_start_freezes_what_lives_as_long_as_the_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frozen: list[int] = []
    monkeypatch.setattr(app_module, "_SETTLED", False)
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(gc.get_count()[0]))
    for name in ("one", "two"):
        app = create_app(Settings(database_url=f"sqlite:///{tmp_path / name}.db"))
        with TestClient(app) as client:
            assert client.get("/health").status_code == 200
    assert len(frozen) == 1


def test_answers_from_memory_are_counted_and_timed(http: httpx.Client, published: str) -> None:
    route = 'method="GET",route="/v1/ratings/{year}/{uscc}"'

    def counted() -> tuple[float, float]:
        """(requests answered 200, requests timed) on the route."""
        text = http.get("/metrics").text
        figures = []
        for metric, labels in (
            ("credit_http_requests_total", route + ',status="200"'),
            ("credit_http_request_seconds_count", route),
        ):
            found = re.search(f"^{metric}\\{{{re.escape(labels)}\\}} (\\S+)$", text, re.MULTILINE)
            figures.append(float(found.group(1)) if found else 0.0)
        return figures[0], figures[1]

    answered, timed = counted()
    for _ in range(5):
        assert http.get(f"/v1/ratings/{YEAR}/{published}").status_code == 200
    assert counted() == (answered + 5, timed + 5)


def test_each_cached_route_names_exactly_its_query_parameters(tmp_path: Path) -> None:
    """`@cached(query=...)` against the schema, so a new parameter cannot be left out (its
    requests would never be kept) nor a removed one kept (junk would be)."""
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'unused.db'}"))
    schema = app.openapi()["paths"]
    marked = {r.path: q for r in api_routes(app) if (q := cached_query(r.endpoint)) is not None}
    assert set(marked) == {
        "/v1/ratings/{year}",
        "/v1/ratings/{year}/{uscc}",
        "/v1/institutions/{uscc}/history",
        "/v1/draws",
        "/v1/draws/{draw_id}",
        "/v1/objections/corrections",
    }
    for path, query in marked.items():
        declared = {p["name"] for p in schema[path]["get"]["parameters"] if p["in"] == "query"}
        assert query == declared, path
