"""The fake platform itself, seen from a real HTTP client: the sharing job's tests trust it.

Each fault is checked as the job will meet it (a status, a header, a timeout, a transport
error), and the platform's own books (applied, applications, requests) are checked against
what the client was told.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fake_platform import (
    DROP_AFTER,
    DROP_BEFORE,
    DUPLICATE_ACK,
    ENDPOINT,
    ERROR_500,
    REJECT_422,
    SLOW,
    TOO_MANY,
    DuplicateAck,
    FakePlatform,
    ServerError,
    Slow,
    TooMany,
    parse_fault,
)
from tests.servers import ROOT

SECRET = "test-secret"
NO_TLS = False  # plain HTTP on loopback: skip loading the CA bundle (0.1 s per client)
NAMES = ["天津市西青区启航文化培训学校", "天津市西青区明德文化培训学校"]


def batch(batch_id: str = "2024-r1-b1", *, names: list[str] = NAMES) -> dict[str, Any]:
    """A batch of the wire format, with the sample district's Chinese names."""
    return {
        "batch_id": batch_id,
        "district_code": "120111",
        "year": 2024,
        "scale": "four",
        "revision": 1,
        "supersedes": [],
        "evaluated_by": {"name": "天津市西青区教育局", "uscc": "11120111MB1893104B"},
        "evaluated_on": "2025-01-15",
        "chain_hash": "sha256:" + "ab" * 32,
        "records": [
            {
                "uscc": f"52120111MJ06274{i:02d}A",
                "name": name,
                "licence_no": f"教民112011170000{i:02d}号",
                "score": 95 - i,
                "grade": "A",
                "vetoed": i == 1,
                "valid_from": "2025-01-01",
                "valid_to": "2025-12-31",
            }
            for i, name in enumerate(names)
        ],
    }


def encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def sign(raw: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def post(
    client: httpx.Client,
    body: Any = None,
    *,
    key: str | None = "key-1",
    raw: bytes | None = None,
    signature: str | None = None,
    timeout: float | None = None,
) -> httpx.Response:
    """POST a batch as the sharing job does: exact bytes, signed, with its Idempotency-Key."""
    raw = encode(batch() if body is None else body) if raw is None else raw
    headers = {"Content-Type": "application/json", "X-Signature": signature or sign(raw)}
    if key is not None:
        headers["Idempotency-Key"] = key
    wait = httpx.USE_CLIENT_DEFAULT if timeout is None else timeout
    return client.post(ENDPOINT, content=raw, headers=headers, timeout=wait)


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    with FakePlatform(SECRET) as running:
        yield running


@pytest.fixture
def client(platform: FakePlatform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.url, timeout=5, verify=NO_TLS) as c:
        yield c


def test_a_new_batch_is_stored_once_and_a_repeat_is_409_with_the_same_receipt(
    platform: FakePlatform, client: httpx.Client
) -> None:
    first = post(client)
    assert first.status_code == 201
    receipt = first.json()["receipt_id"]
    assert receipt and first.json()["records"] == 2

    again = post(client)
    assert again.status_code == 409
    assert again.json()["receipt_id"] == receipt

    assert platform.applications == {"key-1": 1}
    assert platform.applied == {"key-1": batch()}
    assert platform.receipts == {"key-1": receipt}
    assert [(r.status, r.applied, r.body_matches_applied) for r in platform.requests] == [
        (201, True, None),
        (409, False, True),
    ]
    # A second batch under its own key is a second application, with its own receipt.
    other = post(client, batch("2024-r1-b2"), key="key-2")
    assert other.status_code == 201 and other.json()["receipt_id"] != receipt
    assert platform.applications == {"key-1": 1, "key-2": 1}


def test_a_retry_that_changes_the_body_is_still_409_but_is_flagged(
    platform: FakePlatform, client: httpx.Client
) -> None:
    assert post(client).status_code == 201
    changed = batch(names=["天津市西青区博文培训学校"])
    assert post(client, changed).status_code == 409
    assert platform.requests[-1].body_matches_applied is False
    assert platform.applied["key-1"] == batch()  # the first body stays


def test_chinese_names_survive_as_utf8_and_as_escapes(
    platform: FakePlatform, client: httpx.Client
) -> None:
    escaped = json.dumps(batch("b-escaped")).encode("ascii")  # \\u5929… on the wire
    assert b"\\u" in escaped
    assert post(client, raw=encode(batch("b-utf8")), key="k-utf8").status_code == 201
    assert post(client, raw=escaped, key="k-escaped").status_code == 201
    assert [r["name"] for r in platform.records()] == NAMES + NAMES
    assert platform.applied["k-utf8"]["evaluated_by"]["name"] == "天津市西青区教育局"
    assert platform.records()[0]["licence_no"] == "教民11201117000000号"


@pytest.mark.parametrize(
    ("signature", "why"),
    [
        (None, "required"),
        (sign(encode(batch()), "another-secret"), "does not match"),
        ("not-hex", "does not match"),
    ],
)
def test_a_missing_or_wrong_signature_is_401_and_nothing_is_stored(
    platform: FakePlatform, client: httpx.Client, signature: str | None, why: str
) -> None:
    raw = encode(batch())
    headers = {"Idempotency-Key": "key-1"}
    if signature is not None:
        headers["X-Signature"] = signature
    answer = client.post(ENDPOINT, content=raw, headers=headers)
    assert answer.status_code == 401
    assert why in answer.json()["message"]
    assert platform.applied == {} and not platform.applications
    assert platform.requests[-1].signature_ok is False


def test_the_signature_covers_the_exact_bytes(platform: FakePlatform, client: httpx.Client) -> None:
    raw = encode(batch())
    reformatted = json.dumps(batch(), ensure_ascii=False, indent=2).encode()  # same JSON
    assert post(client, raw=reformatted, signature=sign(raw)).status_code == 401
    assert post(client, raw=raw, signature=sign(raw).upper()).status_code == 201


def test_without_an_idempotency_key_the_batch_is_refused(
    platform: FakePlatform, client: httpx.Client
) -> None:
    answer = post(client, key=None)
    assert answer.status_code == 400
    assert "Idempotency-Key" in answer.json()["message"]
    assert platform.applied == {}


def _broken(field: str, value: Any) -> dict[str, Any]:
    body = batch()
    target = body
    *path, last = field.split(".")
    for part in path:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return body


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (b"{not json", "not JSON"),
        ("年".encode("gbk"), "not JSON"),
        (b"[1, 2]", "JSON object"),
        (encode(_broken("batch_id", KeyError)), "batch_id: missing"),
        (encode(_broken("year", "2024")), "year: expected an integer"),
        (encode(_broken("year", True)), "year: expected an integer"),
        (encode(_broken("district_code", "12011")), "district_code"),
        (encode(_broken("supersedes", None)), "supersedes"),
        (encode(_broken("evaluated_by.uscc", "short")), "evaluated_by.uscc"),
        (encode(_broken("evaluated_on", "2025/01/15")), "evaluated_on"),
        (encode(_broken("records", {})), "records: expected a list"),
        (encode(_broken("records.1.score", "90")), "records[1].score"),
        (encode(_broken("records.0.vetoed", 0)), "records[0].vetoed"),
        (encode(_broken("records.1.name", "")), "records[1].name"),
        (encode(_broken("records.0.valid_to", "2024-12-31")), "records[0].valid_to"),
        (encode(_broken("records.0.valid_from", "2025-02-30")), "records[0].valid_from"),
        (encode(_broken("records.1.uscc", "52120111MJ0627400A")), "appears twice"),
    ],
)
def test_a_body_of_the_wrong_shape_is_422_naming_the_field(
    platform: FakePlatform, client: httpx.Client, raw: bytes, named: str
) -> None:
    answer = post(client, raw=raw)
    assert answer.status_code == 422
    assert named in answer.json()["message"]
    assert platform.applied == {}
    assert platform.requests[-1].signature_ok is True  # refused for its shape, not its signature


def test_faults_apply_one_per_request_in_order_then_requests_are_served(
    platform: FakePlatform, client: httpx.Client
) -> None:
    platform.script(ERROR_500, ServerError(503), TOO_MANY(0.05))
    platform.script(REJECT_422("等级不在量表内"))
    assert platform.pending_faults == (
        ERROR_500,
        ServerError(503),
        TooMany(0.05),
        REJECT_422("等级不在量表内"),
    )
    statuses = [post(client).status_code for _ in range(5)]
    assert statuses == [500, 503, 429, 422, 201]
    assert not platform.pending_faults  # used up, one per request
    log = platform.requests
    assert [r.fault.label if r.fault else None for r in log] == [
        "500",
        "503",
        "429 (Retry-After 0.05)",
        "422 (等级不在量表内)",
        None,
    ]
    assert [r.applied for r in log] == [False, False, False, False, True]
    assert all(r.key == "key-1" and r.signature_ok for r in log)
    assert platform.applications == {"key-1": 1}


def test_500_is_answered_even_to_a_valid_batch_and_stores_nothing(
    platform: FakePlatform, client: httpx.Client
) -> None:
    platform.script(ERROR_500)
    answer = post(client)
    assert answer.status_code == 500 and "message" in answer.json()
    assert platform.applied == {}


@pytest.mark.parametrize(("after", "header"), [(0.05, "0.05"), (2, "2"), (3.0, "3")])
def test_429_carries_retry_after_in_seconds(
    platform: FakePlatform, client: httpx.Client, after: float, header: str
) -> None:
    platform.script(TOO_MANY(after))
    answer = post(client)
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == header
    assert float(answer.headers["Retry-After"]) == after
    assert platform.applied == {}


def test_429_without_retry_after(platform: FakePlatform, client: httpx.Client) -> None:
    platform.script(TooMany(None))
    answer = post(client)
    assert answer.status_code == 429 and "Retry-After" not in answer.headers


def test_slow_outlasts_the_client_timeout_and_stores_nothing(
    platform: FakePlatform, client: httpx.Client
) -> None:
    platform.script(SLOW(0.8))
    started = time.monotonic()
    with pytest.raises(httpx.TimeoutException):
        post(client, timeout=0.1)
    assert time.monotonic() - started < 0.6  # the client gave up, long before the reply
    assert platform.applied == {}
    assert platform.requests[0].finished_at is None  # still holding its late 503
    assert post(client).status_code == 201  # served meanwhile, on another connection
    assert platform.wait_idle(timeout=2)
    late = platform.requests[0]
    assert late.status == 503 and late.finished_at is not None and not late.applied
    assert platform.applications == {"key-1": 1}


def test_slow_after_storing_makes_the_retry_a_409(
    platform: FakePlatform, client: httpx.Client
) -> None:
    platform.script(Slow(0.6, applies=True))
    with pytest.raises(httpx.TimeoutException):
        post(client, timeout=0.1)
    assert platform.applications == {"key-1": 1}  # stored although the client gave up
    retry = post(client)
    assert retry.status_code == 409
    assert retry.json()["receipt_id"] == platform.receipts["key-1"]
    assert platform.applications == {"key-1": 1}


def test_drop_before_is_a_transport_error_and_stores_nothing(
    platform: FakePlatform, client: httpx.Client
) -> None:
    platform.script(DROP_BEFORE)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        post(client)
    assert platform.applied == {}
    assert platform.requests[0].status is None and platform.requests[0].finished_at is not None
    assert post(client).status_code == 201
    assert platform.applications == {"key-1": 1}


def test_drop_after_stores_the_batch_and_the_retry_gets_409(
    platform: FakePlatform, client: httpx.Client
) -> None:
    platform.script(DROP_AFTER)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        post(client)
    assert platform.applied == {"key-1": batch()}  # stored, though the client heard nothing
    stored_receipt = platform.receipts["key-1"]
    dropped = platform.requests[0]
    assert dropped.applied and dropped.status is None and dropped.receipt_id == stored_receipt

    retry = post(client)
    assert retry.status_code == 409
    assert retry.json()["receipt_id"] == stored_receipt
    assert platform.applications == {"key-1": 1}
    assert len(platform.records()) == 2


def test_repeated_drops_after_storing_never_apply_twice(
    platform: FakePlatform, client: httpx.Client
) -> None:
    platform.script(DROP_AFTER, DROP_AFTER, DROP_AFTER)
    for _ in range(3):
        with pytest.raises(httpx.TransportError):
            post(client)
    assert post(client).status_code == 409
    assert platform.applications == {"key-1": 1}
    assert [r.applied for r in platform.requests] == [True, False, False, False]


def test_duplicate_ack_repeats_the_success_with_the_same_receipt(
    platform: FakePlatform, client: httpx.Client
) -> None:
    first = post(client)
    assert first.status_code == 201
    platform.script(DUPLICATE_ACK)
    again = post(client)
    assert again.status_code == 200  # not 409: this platform acknowledges repeats as successes
    assert again.json()["receipt_id"] == first.json()["receipt_id"]
    assert platform.applications == {"key-1": 1}


def test_duplicate_ack_on_a_new_key_applies_it_once(
    platform: FakePlatform, client: httpx.Client
) -> None:
    platform.script(DUPLICATE_ACK, DuplicateAck())
    first, second = post(client), post(client)
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["receipt_id"] == second.json()["receipt_id"] == platform.receipts["key-1"]
    assert platform.applications == {"key-1": 1}


def test_duplicate_ack_does_not_hide_a_bad_signature(
    platform: FakePlatform, client: httpx.Client
) -> None:
    platform.script(DUPLICATE_ACK)
    assert post(client, signature="0" * 64).status_code == 401
    assert platform.applied == {}


def test_reject_422_carries_the_message_and_stores_nothing(
    platform: FakePlatform, client: httpx.Client
) -> None:
    platform.script(REJECT_422("统一社会信用代码不存在"))
    answer = post(client)
    assert answer.status_code == 422
    assert answer.json() == {"message": "统一社会信用代码不存在"}
    assert platform.applied == {}
    assert post(client).status_code == 201


def test_concurrent_posts_of_one_key_apply_it_exactly_once(platform: FakePlatform) -> None:
    statuses: list[int] = []
    receipts: set[str] = set()
    gate = threading.Barrier(8)

    def send() -> None:
        with httpx.Client(base_url=platform.url, timeout=5, verify=NO_TLS) as own:
            gate.wait()
            answer = post(own)
        statuses.append(answer.status_code)
        receipts.add(answer.json()["receipt_id"])

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201] + [409] * 7
    assert len(receipts) == 1
    assert platform.applications == {"key-1": 1}
    assert len(platform.requests) == 8


def test_the_books_are_copies(platform: FakePlatform, client: httpx.Client) -> None:
    post(client)
    platform.applied["key-1"]["records"].clear()
    platform.records()[0]["name"] = "changed"
    platform.requests[0].status = 999
    assert [r["name"] for r in platform.records()] == NAMES
    assert platform.requests[0].status == 201


def test_reset_forgets_everything(platform: FakePlatform, client: httpx.Client) -> None:
    platform.script(ERROR_500, ERROR_500)
    assert post(client).status_code == 500
    platform.reset()
    assert (platform.applied, platform.requests, platform.pending_faults) == ({}, [], ())
    assert post(client).status_code == 201


def test_the_listing_and_unknown_paths(platform: FakePlatform, client: httpx.Client) -> None:
    platform.script(ERROR_500)
    assert client.get(ENDPOINT).json() == {"batches": []}  # a GET uses up no fault
    assert client.get("/nowhere").status_code == 404
    assert post(client).status_code == 500
    assert post(client).status_code == 201
    (listed,) = client.get(ENDPOINT).json()["batches"]
    assert listed["receipt_id"] == platform.receipts["key-1"] and listed["records"] == 2


def test_stop_wakes_a_slow_reply_and_closes_the_port() -> None:
    platform = FakePlatform(SECRET).start()
    url = platform.url
    platform.script(SLOW(30))
    with (
        httpx.Client(base_url=url, timeout=0.1, verify=NO_TLS) as c,
        pytest.raises(httpx.TimeoutException),
    ):
        post(c)
    started = time.monotonic()
    platform.stop()
    assert time.monotonic() - started < 2
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + ENDPOINT, timeout=1, verify=NO_TLS)
    with pytest.raises(RuntimeError):
        _ = platform.url


def test_script_refuses_what_is_not_a_fault(platform: FakePlatform) -> None:
    with pytest.raises(TypeError, match="TooMany needs its arguments"):
        platform.script(TOO_MANY)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a fault"):
        platform.script("500")  # type: ignore[arg-type]
    assert platform.pending_faults == ()


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("500", ERROR_500),
        ("502", ServerError(502)),
        ("429", TooMany()),
        ("429:0.5", TooMany(0.5)),
        ("slow:15", Slow(15)),
        ("slow:2:applies", Slow(2, applies=True)),
        ("drop-before", DROP_BEFORE),
        ("drop-after", DROP_AFTER),
        ("duplicate-ack", DUPLICATE_ACK),
        ("422", REJECT_422()),
        ("422:格式错误: 缺少字段", REJECT_422("格式错误: 缺少字段")),
    ],
)
def test_parse_fault(text: str, fault: object) -> None:
    assert parse_fault(text) == fault


@pytest.mark.parametrize("text", ["404", "slow", "slow:x", "429:-1", "drop", "drop-after:1"])
def test_parse_fault_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        parse_fault(text)


def test_by_hand_it_prints_its_url_and_what_it_receives_with_chinese_names() -> None:
    command = [sys.executable, "-m", "tests.fake_platform", "--port", "0", "--secret", SECRET]
    process = subprocess.Popen(
        [*command, "--fault", "500"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert process.stdout is not None
    try:
        first = process.stdout.readline().decode("utf-8")
        found = re.search(r"http://127\.0\.0\.1:\d+", first)
        assert found, first
        with httpx.Client(base_url=found.group(0), timeout=5, verify=NO_TLS) as c:
            assert post(c).status_code == 500
            assert post(c).status_code == 201
    finally:
        process.terminate()
        printed = first + process.stdout.read().decode("utf-8")
        process.wait(timeout=5)
    assert process.returncode == 0, printed
    assert f"CREDIT_PLATFORM_URL={found.group(0)}" in printed
    assert f"CREDIT_PLATFORM_SECRET={SECRET}" in printed
    assert "fault=500  -> 500" in printed
    assert "-> 201  receipt=rcpt-000001  APPLIED" in printed
    for name in [*NAMES, "天津市西青区教育局"]:
        assert name in printed
    assert "stopped: 1 batches, 2 records applied" in printed


def test_a_client_killed_in_the_middle_of_a_body_uses_up_no_fault(platform: FakePlatform) -> None:
    """What the SIGKILL test leaves behind: half a request, then a closed socket."""
    platform.script(ERROR_500)
    raw = encode(batch())
    head = (
        f"POST {ENDPOINT} HTTP/1.1\r\nHost: x\r\nIdempotency-Key: key-1\r\n"
        f"X-Signature: {sign(raw)}\r\nContent-Length: {len(raw)}\r\n\r\n"
    ).encode()
    host, port = platform.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as cut:
        cut.sendall(head + raw[: len(raw) // 2])
    deadline = time.monotonic() + 2
    while not platform.requests and time.monotonic() < deadline:
        time.sleep(0.005)  # the handler may not have read the headers yet
    assert platform.wait_idle(timeout=2)
    (entry,) = platform.requests
    assert (entry.key, entry.status, entry.client_gone, entry.fault) == ("key-1", None, True, None)
    assert platform.applied == {}
    assert platform.pending_faults == (ERROR_500,)


def test_a_restarted_platform_remembers_what_it_applied() -> None:
    platform = FakePlatform(SECRET).start()
    try:
        with httpx.Client(base_url=platform.url, verify=NO_TLS) as c:
            receipt = post(c).json()["receipt_id"]
        platform.stop()
        platform.start()
        with httpx.Client(base_url=platform.url, verify=NO_TLS) as c:
            again = post(c)
        assert again.status_code == 409 and again.json()["receipt_id"] == receipt
        assert platform.applications == {"key-1": 1}
    finally:
        platform.stop()
