"""Attacks on the HTTP edge (issue 9), each against a real `credit-rating serve` process.

Body size, keys before bodies, rates, time, headers, redirects, 405s, NUL characters, hostile
JSON and counting drafts. The service the other tests share (`live`, both databases) has the
default limits; two more on SQLite have small ones: `small` (bodies of 4 KiB, uploads of
8 KiB, 2 s to send a body) and `strict` (5 anonymous requests, 3 wrong keys per address a day;
the tests tell addresses apart with `X-Forwarded-For`, which uvicorn trusts from 127.0.0.1).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from scoring.shipped import SAMPLE_DIR
from service.api import guard, keys
from service.api.app import create_app
from service.api.keys import Role
from service.core.database import make_engine, writing
from service.core.migrate import upgrade
from service.core.settings import Settings
from tests.conftest import Live
from tests.servers import running_service
from tests.test_api import rules_documents

PROBLEM = "application/problem+json"
MiB = 2**20
SECURITY = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}
SAMPLE = "52120111MJ0627485A"


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


# Raw HTTP: to send a head that promises a body and not send it all --------------------------


@dataclass
class Raw:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float


def connect(base: str) -> socket.socket:
    where = urlsplit(base)
    return socket.create_connection((where.hostname, where.port), timeout=30)


def head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def answer(sock: socket.socket, started: float) -> Raw:
    """Read one answer (with a Content-Length) from `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before an answer: {data!r}")
        data += chunk
    top, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = top.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return Raw(int(status_line.split()[1]), headers, body, time.monotonic() - started)


def promise(base: str, path: str, length: int, sent: bytes, **headers: str) -> Raw:
    """A request whose head promises `length` bytes of body, of which only `sent` come."""
    with connect(base) as sock:
        started = time.monotonic()
        sock.sendall(head("POST", path, {"Content-Length": str(length), **headers}) + sent)
        return answer(sock, started)


# The service the other tests share: default limits ------------------------------------------


@pytest.fixture
def http(live: Live) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.base, timeout=60) as client:
        yield client


def test_a_large_body_is_refused_before_it_is_read_and_health_stays_responsive(
    live: Live, http: httpx.Client
) -> None:
    """60 MB promised to /v1/evaluate: 401 without a key, 413 with one, at once, unread."""
    json_head = {"Content-Type": "application/json"}
    anonymous = promise(live.base, "/v1/evaluate", 60_000_000, b"[" * 65536, **json_head)
    assert anonymous.status == 401 and anonymous.seconds < 2, anonymous
    assert anonymous.headers["www-authenticate"] == "ApiKey"
    wrong = promise(
        live.base, "/v1/evaluate", 60_000_000, b"[", **json_head, **{"X-API-Key": "cr_x"}
    )
    assert wrong.status == 401
    keyed = promise(live.base, "/v1/evaluate", 60_000_000, b"[", **json_head, **live.as_("analyst"))
    assert keyed.status == 413 and keyed.seconds < 2, keyed
    assert b"max_body_bytes (16777216 bytes)" in keyed.body
    upload = promise(
        live.base,
        "/v1/imports",
        300 * MiB,
        b"--x\r\n",
        **{"Content-Type": "multipart/form-data; boundary=x"},
        **live.as_("supervisor"),
    )
    assert upload.status == 413 and b"max_upload_bytes (268435456 bytes)" in upload.body

    # While bodies of 60 MB are promised and left hanging, the service answers as before.
    with ExitStack() as hanging:
        for _ in range(8):
            sock = hanging.enter_context(connect(live.base))
            sock.sendall(head("POST", "/v1/evaluate", {"Content-Length": "60000000"}) + b"[" * 4096)
        slowest = 0.0
        for _ in range(20):
            started = time.monotonic()
            assert http.get("/health").status_code == 200
            slowest = max(slowest, time.monotonic() - started)
        assert slowest < 0.5


def test_every_answer_carries_the_security_headers(live: Live, http: httpx.Client) -> None:
    answers = [
        http.get("/health"),
        http.get("/v1/rules", params={"year": 2023}),
        http.get("/v1/no-such-route"),  # a problem
        http.post("/v1/evaluate", json={"year": 2023}),  # refused by the guard
        http.get("/v1/institutions", headers=live.as_("analyst")),
    ]
    supervisor = live.as_("supervisor")
    assert http.post("/v1/ratings/2025", headers=supervisor).status_code == 201
    assert http.post("/v1/ratings/2025/publish", headers=supervisor).status_code == 200
    answers += [http.get("/v1/ratings/2025") for _ in range(3)]  # the last ones from memory
    for response in answers:
        assert {k: response.headers.get(k) for k in SECURITY} == SECURITY, response.url
    assert "cache-control" not in answers[-1].headers  # left to the routes
    docs = http.get("/docs")
    assert docs.status_code == 200 and docs.headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in docs.headers["content-security-policy"]  # its own scripts


def test_a_redirect_does_not_echo_the_host_and_a_405_says_what_is_allowed(
    http: httpx.Client,
) -> None:
    moved = http.get("/v1/ratings/2023/", headers={"Host": "evil.example"})
    assert moved.status_code == 307
    assert moved.headers["location"] == "/v1/ratings/2023"
    for path, allowed in [
        ("/v1/ratings/2023", "GET, POST"),
        ("/v1/institutions", "GET, POST"),
        ("/v1/evaluate", "POST"),
        ("/health", "GET"),
    ]:
        refused = http.delete(path)
        problem(refused, 405)
        assert refused.headers["allow"] == allowed, path


def test_nul_characters_are_refused_with_422_on_both_databases(
    live: Live, http: httpx.Client
) -> None:
    """PostgreSQL text cannot hold NUL: a 201 on SQLite was a 500 there."""
    supervisor = live.as_("supervisor")
    institution = {
        "uscc": SAMPLE,
        "name": "天津市西青区启航文化培训学校",
        "district_code": "120111",
        "licence_no": "教民11201117000001号",
        "address": "",
    }
    for field in ("name", "licence_no", "address"):
        bad = {**institution, field: institution[field] + "\x00x"}
        found = problem(http.post("/v1/institutions", headers=supervisor, json=bad), 422)
        assert any(e["loc"] == ["body", field] for e in found["errors"]), found
    finding = {"uscc": SAMPLE, "indicator": "refunds_per_contract", "occurred_on": "2025-05-01"}
    for field in ("indicator", "reference", "note", "finding_id"):
        bad = {**finding, field: "x\x00y"}
        problem(http.post("/v1/findings", headers=supervisor, json=bad), 422)
    problem(http.post("/v1/ratings/2023/publish", headers=supervisor, json={"reason": "\x00"}), 422)
    evaluate = {"year": 2023, "rules": {"ruleset.yaml": {"version": "\x00"}}}
    problem(http.post("/v1/evaluate", headers=supervisor, json=evaluate), 422)


def test_hostile_json_gets_a_4xx_problem_never_a_500(live: Live, http: httpx.Client) -> None:
    """Deep nesting and huge numbers, where the body is parsed and where candidate rules are."""
    headers = {**live.as_("supervisor"), "Content-Type": "application/json"}
    deep = "[" * 100_000 + "]" * 100_000
    rules = '{"year": 2023, "rules": {"a": @}}'
    documents = rules_documents()  # the shipped rules, whole, with one number to replace
    documents["indicators.yaml"]["indicators"][0]["number"] = "@"
    indicators = json.dumps({"year": 2023, "rules": documents}).replace('"@"', "@")
    for template, value in [
        ('{"year": @}', deep),
        ('{"year": @}', "1" * 5000),
        (rules, "[" * 200 + "]" * 200),
        (rules, deep),
        (rules, "1" * 5000 + ".0"),
        (indicators, "9" * 4000),
        (indicators, "1e400"),
        (indicators, "NaN"),
    ]:
        body = template.replace("@", value)
        response = http.post("/v1/evaluate", content=body, headers=headers)
        assert 400 <= response.status_code < 500, (body[:60], response.text)
        problem(response, response.status_code)


def test_a_draft_answers_exactly_as_a_missing_revision_to_those_who_may_not_see_drafts(
    live: Live, http: httpx.Client
) -> None:
    year = 2027
    draft = http.post(f"/v1/ratings/{year}", headers=live.as_("supervisor"))
    assert draft.status_code == 201
    revision = draft.json()["revision"]
    for headers in ({}, live.as_("sharing")):
        for path in (f"/v1/ratings/{year}", f"/v1/ratings/{year}/{SAMPLE}"):
            seen = http.get(path, params={"revision": revision}, headers=headers)
            missing = http.get(path, params={"revision": revision + 1}, headers=headers)
            problem(seen, 404)
            said = seen.json()["detail"].replace(f" {revision} ", " N ")
            assert said == missing.json()["detail"].replace(f" {revision + 1} ", " N ")
            assert set(seen.json()) == set(missing.json())
    analyst = http.get(
        f"/v1/ratings/{year}", params={"revision": revision}, headers=live.as_("analyst")
    )
    assert analyst.status_code == 200


# A service with small limits ----------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    base: str
    keys: dict[str, str]

    def as_(self, role: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[role]}


def service_with(folder: Path, env: dict[str, str]) -> Iterator[Service]:
    url = f"sqlite:///{folder / 'credit-rating.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with writing(engine) as conn:
        made = {role.value: keys.create(conn, role=role, name=role.value) for role in Role}
    engine.dispose()
    with running_service(url, extra_env=env) as base:
        yield Service(base, made)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    env = {
        "CREDIT_MAX_BODY_BYTES": "4096",
        "CREDIT_MAX_UPLOAD_BYTES": "8192",
        "CREDIT_REQUEST_TIMEOUT": "2",
    }
    yield from service_with(tmp_path_factory.mktemp("small"), env)


def chunks(total: int, size: int = 1024) -> Iterator[bytes]:
    for start in range(0, total, size):
        yield b" " * min(size, total - start)


def test_a_streamed_body_is_refused_as_soon_as_it_passes_the_limit(small: Service) -> None:
    with httpx.Client(base_url=small.base, timeout=30) as http:
        headers = {**small.as_("analyst"), "Content-Type": "application/json"}
        # chunked (no Content-Length): counted as it is read
        under = http.post(
            "/v1/evaluate", content=iter([b'{"year": 2023}', b" " * 1000]), headers=headers
        )
        assert under.status_code == 200, under.text
        over = problem(http.post("/v1/evaluate", content=chunks(6000), headers=headers), 413)
        assert over["detail"] == "the request body is over max_body_bytes (4096 bytes)"
        # an upload has its own limit, larger than a body's
        supervisor = small.as_("supervisor")
        csv = (SAMPLE_DIR / "institutions.csv").read_bytes()[:5000]
        files = {"files": ("institutions.csv", csv, "text/csv")}
        fits = http.post("/v1/imports", files=files, headers=supervisor)
        assert fits.status_code != 413, fits.text
        files = {"files": ("institutions.csv", csv + b"\n" * 9000, "text/csv")}
        big = problem(http.post("/v1/imports", files=files, headers=supervisor), 413)
        assert "max_upload_bytes (8192 bytes)" in big["detail"]
        part = b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.csv"\r\n\r\n'
        streamed = iter([part, b"x" * 5000, b"x" * 5000, b"\r\n--b--\r\n"])
        multipart = {**supervisor, "Content-Type": "multipart/form-data; boundary=b"}
        big = problem(http.post("/v1/imports", content=streamed, headers=multipart), 413)
        assert "max_upload_bytes (8192 bytes)" in big["detail"]
        # a body anywhere else is held to the body limit, multipart or not
        form = {"files": ("x.csv", b"x" * 5000, "text/csv")}
        problem(http.post("/v1/findings", files=form, headers=supervisor), 413)


def test_a_body_must_arrive_within_the_request_timeout(small: Service) -> None:
    headers = {**small.as_("analyst"), "Content-Type": "application/json"}
    with connect(small.base) as sock:
        started = time.monotonic()
        sock.sendall(head("POST", "/v1/evaluate", {"Content-Length": "100", **headers}) + b"{")
        late = answer(sock, started)
    assert late.status == 408, late
    assert 1.5 < late.seconds < 6
    assert b"request_timeout (2 s)" in late.body


# A service with low rates -------------------------------------------------------------------


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    env = {"CREDIT_ANONYMOUS_RATE": "5/day", "CREDIT_FAILED_KEY_RATE": "3/day"}
    yield from service_with(tmp_path_factory.mktemp("strict"), env)


def test_anonymous_callers_are_limited_per_address(strict: Service) -> None:
    client = {"X-Forwarded-For": "203.0.113.7"}
    with httpx.Client(base_url=strict.base, timeout=30) as http:
        assert [http.get("/health", headers=client).status_code for _ in range(5)] == [200] * 5
        limited = problem(http.get("/v1/rules", params={"year": 2023}, headers=client), 429)
        assert "anonymous_rate (5/day per client address)" in limited["detail"]
        response = http.get("/health", headers=client)
        assert 0 < int(response.headers["retry-after"]) <= 86_400
        assert response.headers["x-frame-options"] == "DENY"
        # with a key, or from another address, nothing changes
        assert http.get("/health", headers={**client, **strict.as_("analyst")}).status_code == 200
        assert http.get("/health", headers={"X-Forwarded-For": "203.0.113.8"}).status_code == 200


def test_wrong_keys_are_limited_per_address(strict: Service) -> None:
    client = {"X-Forwarded-For": "198.51.100.9"}
    with httpx.Client(base_url=strict.base, timeout=30) as http:
        for n in range(3):
            wrong = {**client, "X-API-Key": f"cr_guess{n}"}
            problem(http.get("/v1/institutions", headers=wrong), 401)
        # the fourth try is not even looked up; a valid key from there waits too
        limited = problem(
            http.get("/v1/institutions", headers={**client, "X-API-Key": "cr_x"}), 429
        )
        assert "failed_key_rate (3/day wrong API keys per client address)" in limited["detail"]
        blocked = http.get("/v1/institutions", headers={**client, **strict.as_("analyst")})
        problem(blocked, 429)
        assert int(blocked.headers["retry-after"]) > 0
        other = {"X-Forwarded-For": "198.51.100.10", **strict.as_("analyst")}
        assert http.get("/v1/institutions", headers=other).status_code == 200


def test_requests_at_once_from_many_threads_are_counted_right(strict: Service) -> None:
    """One event loop counts: 10 anonymous requests at once from one address, 5 admitted."""
    client = {"X-Forwarded-For": "192.0.2.55"}
    statuses: list[int] = []

    def ask() -> None:
        with httpx.Client(base_url=strict.base, timeout=30) as http:
            statuses.append(http.get("/health", headers=client).status_code)

    threads = [threading.Thread(target=ask) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 5 + [429] * 5


def test_an_unexpected_error_is_a_problem_with_the_headers_too(tmp_path: Path) -> None:
    """Starlette answers a bug outside every middleware; the guard answers it first."""
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'unused.db'}"))

    @app.get("/v1/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        failed = client.get("/v1/boom")
    assert problem(failed, 500)["detail"] == "RuntimeError"
    assert {k: failed.headers.get(k) for k in SECURITY} == SECURITY


def test_rates_count_in_fixed_windows_per_client(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_080_000.0]  # a multiple of 60 and of 3600: the start of a window of each
    monkeypatch.setattr(guard.time, "time", lambda: now[0])
    rate = guard.Rate("2/minute;3/hour")
    assert [rate.hit("a") for _ in range(3)] == [0, 0, 60]  # the minute's window is full
    assert rate.hit("b") == 0 and rate.exhausted("b") == 0  # another client: its own count
    now[0] += 61
    assert rate.hit("a") == 3600 - 61  # a new minute, but the third of the hour
    assert rate.exhausted("a") == 3600 - 61  # looking does not count
    now[0] += 3600
    assert rate.hit("a") == 0


def test_an_ipv6_client_is_counted_by_its_64_network() -> None:
    def of(address: str) -> str:
        return guard.client_of({"client": (address, 1234)})

    assert of("2001:db8:1:2:aaaa::1") == of("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert of("2001:db8:1:3::1") != of("2001:db8:1:2::1")
    assert of("192.0.2.1") == "192.0.2.1"
    assert guard.client_of({}) == "-"
