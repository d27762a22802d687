"""What every request must get past before anything reads its body, and what every answer says.

One plain ASGI middleware (cheap on the hot path: a few dictionary look-ups), outside the
response cache, so that answers from memory are limited and carry the headers too. In order:

1. Rate. A request without a key counts against `anonymous_rate` per client address; a client
   address that sent more wrong keys than `failed_key_rate` gets no request with a key through
   until its window ends. Both: 429, with `Retry-After`. Counted in memory, per process.
2. Key. A request that carries a body (a `Content-Length` above 0, or chunked) needs a valid
   key, whatever its route: no route anyone may call takes a body. The key is looked up here,
   once, as the routes' access rules do (they reuse the answer); roles are left to the routes.
   401 before a byte of the body is read.
3. Size. A body over `max_body_bytes` (or, for a multipart upload to `/v1/imports`,
   `max_upload_bytes`): 413 at once when `Content-Length` says so, else as soon as the bytes
   read pass it. The problem names the setting.
4. Time. The body must have arrived `request_timeout` seconds after the request started: 408.
   Only the body: the routes do their work in the thread pool, and a thread cannot be stopped.
   Cancelling a route waits until its thread is done, so a timeout there would only turn an
   answer already computed (a publish already committed) into a 504; answering 504 at once and
   leaving the thread running would free nothing. Bounding the work itself is the databases'
   part (a statement timeout).

Every answer gets the security headers (`HEADERS`; the documentation pages and the public page
a looser policy, so that they can load their scripts and stylesheets from this service), and a
redirect's `Location` loses any scheme and host: it would otherwise echo the request's `Host`
header.

A client's address is the one uvicorn gives: the connection's, or `X-Forwarded-For` when the
connection comes from an address in `FORWARDED_ALLOW_IPS` (uvicorn's default: 127.0.0.1, a
reverse proxy on the same host). IPv6 addresses are counted by their /64 network, which one
client usually holds whole.
"""

from __future__ import annotations

import ipaddress
import math
import time

import anyio
from limits import parse_many
from sqlalchemy import Engine
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.caches.memory import ReadCache
from service.api.deps import LOOKED_UP, find_principal
from service.api.problems import problem_response, unexpected
from service.core.settings import Settings

API_KEY = b"x-api-key"
IMPORTS = "/v1/imports"
MULTIPART = b"multipart/form-data"
ARRIVED = "credit.arrived"
"""Scope entry: when the request arrived (`time.monotonic()`), for the body's deadline."""

HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
]
"""On every answer of the API: nothing in it is ever a page, a script or a frame."""
DOCS = ("/docs", "/redoc")
DOCS_HEADERS: list[tuple[bytes, bytes]] = [
    *HEADERS[:3],
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' "
        b"'unsafe-inline'; img-src 'self' data:; worker-src 'self' blob:; frame-ancestors 'none'",
    ),
]
"""The documentation pages run inline scripts and styles, and load the rest from this service
only (service.api.routes.docs): a page that reached for a CDN would be refused."""
PUBLIC = "/public"
PUBLIC_HEADERS: list[tuple[bytes, bytes]] = [
    *HEADERS[:3],
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        b"base-uri 'none'; frame-ancestors 'none'",
    ),
]
"""The public page (公示): its own stylesheet and GET form, no script at all."""

MAX_CLIENTS = 1_000_000
"""Client addresses counted in one window; past it, new ones are counted together as one."""


class Rate:
    """Fixed windows of a rate in `limits` notation ("600/minute", "10/second;500/hour"),
    counted per client in this process's memory (one event loop: no lock needed)."""

    def __init__(self, rate: str) -> None:
        self.rate = rate
        self.items = [(item.amount, item.get_expiry()) for item in parse_many(rate)]
        self.windows = [-1] * len(self.items)
        self.counts: list[dict[str, int]] = [{} for _ in self.items]

    def _counts(self, i: int, now: float) -> dict[str, int]:
        window = int(now // self.items[i][1])
        if window != self.windows[i]:  # a new window: every count starts again
            self.windows[i], self.counts[i] = window, {}
        return self.counts[i]

    def hit(self, client: str) -> int:
        """Count one; 0 while within the rate, else the seconds until the window ends."""
        return self._check(client, 1)

    def exhausted(self, client: str) -> int:
        """Without counting: 0 while another hit would be within the rate, else seconds."""
        return self._check(client, 0)

    def _check(self, client: str, cost: int) -> int:
        now = time.time()
        wait = 0
        for i, (amount, period) in enumerate(self.items):
            counts = self._counts(i, now)
            if client not in counts and len(counts) >= MAX_CLIENTS:
                client = "*"
            count = counts.get(client, 0) + cost
            if cost:
                counts[client] = count
            if count > amount or (not cost and count >= amount):
                wait = max(wait, math.ceil(period - now % period))
        return wait


def client_of(scope: Scope) -> str:
    """The address the rates count by (an IPv6 address by its /64)."""
    client = scope.get("client")
    address: str = client[0] if client else "-"
    if ":" in address:
        try:
            return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
        except ValueError:
            return address
    return address


class Guard:
    def __init__(self, app: ASGIApp, settings: Settings, cache: ReadCache, engine: Engine) -> None:
        self.app = app
        self.cache = cache
        self.engine = engine
        self.anonymous = Rate(settings.anonymous_rate)
        self.failed = Rate(settings.failed_key_rate)
        self.max_body = settings.max_body_bytes
        self.max_upload = settings.max_upload_bytes
        self.timeout = settings.request_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[ARRIVED] = time.monotonic()
        key: str | None = None
        length: bytes | None = None
        chunked = multipart = seen_key = False
        for name, value in scope["headers"]:
            if name == API_KEY and not seen_key:  # the first, as the routes read it
                seen_key = True
                key = value.decode("latin-1") or None  # as FastAPI's APIKeyHeader: empty is none
            elif name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"content-type":
                multipart = value[: len(MULTIPART)].lower() == MULTIPART
        client = client_of(scope)
        path: str = scope["path"]
        extra = (
            DOCS_HEADERS
            if path.startswith(DOCS)
            else PUBLIC_HEADERS
            if path.startswith(PUBLIC)
            else HEADERS
        )
        failed = self.failed

        started = False

        async def guarded(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = list(message.get("headers", ()))
                if status == 401 and key is not None:
                    failed.hit(client)  # wherever the key was refused: here or by a route
                if 300 <= status < 400:
                    headers = [(n, _relative(v) if n == b"location" else v) for n, v in headers]
                message = {**message, "headers": headers + extra}
            await send(message)

        try:
            await self._admit(scope, receive, guarded, key, client, length, chunked, multipart)
        except Exception as exc:
            # Starlette answers a bug's 500 outside every middleware: answered here, it gets
            # the headers too (and the error still reaches the server's log).
            if not started:
                await unexpected(exc)(scope, receive, guarded)
            raise

    async def _admit(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        key: str | None,
        client: str,
        length: bytes | None,
        chunked: bool,
        multipart: bool,
    ) -> None:
        """Refuse the request (rate, key, size) or pass it on, its body bounded."""

        async def refuse(status: int, title: str, detail: str | None, **headers: str) -> None:
            await problem_response(status, title, detail, headers=headers)(scope, receive, send)

        if key is None:
            wait = self.anonymous.hit(client)
            if wait:
                detail = f"over anonymous_rate ({self.anonymous.rate} per client address)"
                await refuse(429, "Too many requests", detail, **{"Retry-After": str(wait)})
                return
        else:
            wait = self.failed.exhausted(client)
            if wait:
                rate = self.failed.rate
                detail = f"over failed_key_rate ({rate} wrong API keys per client address)"
                await refuse(429, "Too many requests", detail, **{"Retry-After": str(wait)})
                return

        if chunked or (length is not None and length != b"0"):
            if key is None:
                await refuse(401, "An API key is required (header X-API-Key)", None)
                return
            principal = await find_principal(self.cache, self.engine, key)
            if principal is None:
                await refuse(401, "Invalid or revoked API key", None)
                return
            scope[LOOKED_UP] = (key, principal)
            if multipart and scope["path"] == IMPORTS:
                limit, setting = self.max_upload, "max_upload_bytes"
            else:
                limit, setting = self.max_body, "max_body_bytes"
            over = f"the request body is over {setting} ({limit} bytes)"
            if length is not None and (not length.isdigit() or int(length) > limit):
                await refuse(413, "Too large", over)
                return
            receive = self._bounded(receive, limit, over, scope[ARRIVED] + self.timeout)

        await self.app(scope, receive, send)

    def _bounded(self, receive: Receive, limit: int, over: str, deadline: float) -> Receive:
        """`receive`, refusing a body past `limit` bytes (413) or not all there by `deadline`
        (408). Raised as HTTPException: FastAPI passes those on from reading a body."""
        received = 0
        timeout = f"the request body did not arrive within request_timeout ({self.timeout:g} s)"

        async def bounded() -> Message:
            nonlocal received
            try:
                with anyio.fail_after(max(deadline - time.monotonic(), 0)):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(408, timeout) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, over)
            return message

        return bounded


def _relative(location: bytes) -> bytes:
    """A location without scheme and host (`http://evil.example/v1/x` → `/v1/x`)."""
    scheme, sep, rest = location.partition(b"://")
    if not sep or b"/" in scheme:
        return location
    _, slash, path = rest.partition(b"/")
    return slash + path if slash else b"/"
