"""Repeated reads answered from memory, before FastAPI is reached.

A rating lookup is a few microseconds of work wrapped in much more of FastAPI's (routing,
dependency solving, validation, serialisation). Yet its answer depends only on the request's
path, its query and the API key it carries, and changes only when the database does. So the
first successful answer of a route marked `@cached(...)` is kept, whole, under a digest of
exactly those three, and the same request is answered with the same bytes until the next
commit anywhere (the `ReadCache` generation, SQLite's `PRAGMA data_version`).

Nothing about access is decided here: a request is only ever answered from memory with what
the route itself answered to the very same path, query and key, and only 200s are kept. A
bad, revoked (a commit) or under-privileged key, a bad year or code, a missing snapshot all
reach the route and get its answer. Only requests whose path and query are short and written
the one canonical way are kept: a query naming nothing but the route's own parameters, each
once, in order, nothing escaped that need not be, and every whole number written as Python
writes it (`2023`, never `02023`, `2023.000`, `%32023` or `+2023`, which the route answers
alike). So junk in a URL can neither fill the memory nor push out what is kept: each answer
kept has one URL. When `ReadCache` cannot tell whether
anything was committed (PostgreSQL unreachable), nothing is answered from memory.

Sits inside every middleware that could change a response (around it are only the guard,
which refuses requests and adds the same headers to every answer, and the metrics): what is
sent from memory is what the route sent, and it is rate-limited and given the headers anew.
"""

from __future__ import annotations

import hashlib
import re
import typing
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.caches.memory import ReadCache

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])

API_KEY = b"x-api-key"
API = "/v1/"
"""Only the API's answers are kept: `/health`, `/metrics` and the docs never wait on the check."""
MAX_URL = 512
"""Longer path plus query: never kept (no route of ours needs one for a 200)."""
OVERHEAD = 512
"""Bytes counted for an entry besides its body: the digest, the messages, the headers."""
GENERATION = "credit.generation"
"""Scope entry where the generation read for the request is left, for what answers it inside
(`service.api.published`): one reading of the commit check per request."""


def cached(*, query: Iterable[str] = ()) -> Callable[[Endpoint], Endpoint]:
    """Mark a GET route whose answer depends on nothing but path, `query` (the names of its
    query parameters), API key and the database."""

    def mark(endpoint: Endpoint) -> Endpoint:
        endpoint.cached_query = frozenset(query)  # type: ignore[attr-defined]
        return endpoint

    return mark


def cached_query(endpoint: Any) -> frozenset[str] | None:
    """The query parameters of a route marked `@cached`; None for any other."""
    return getattr(endpoint, "cached_query", None)


class ResponseCache:
    def __init__(self, app: ASGIApp, cache: ReadCache) -> None:
        self.app = app
        self.cache = cache
        self._routes: list[Any] = []  # the routes of the answers kept, each once
        self._numbers: dict[int, int] = {}  # id(route): its place in _routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not scope["path"].startswith(API):
            await self.app(scope, receive, send)
            return
        generation = await self.cache.generation()
        scope[GENERATION] = generation
        path: str = scope["path"]
        query: bytes = scope["query_string"]
        if generation is None or len(path) + len(query) > MAX_URL:
            await self.app(scope, receive, send)
            return
        entry = _digest(path, query, [v for name, v in scope["headers"] if name == API_KEY])
        hit: Kept | None = self.cache.get(entry)
        if hit is not None:
            scope["route"] = self._routes[hit[0]]  # as routing would have set it (for the metrics)
            for message in _sent(hit):
                await send(message)
            return

        sent: list[Message] = []

        async def keep(message: Message) -> None:
            # the start of an answer worth keeping, then everything after it
            if sent or (message["type"] == "http.response.start" and _keepable(scope, message)):
                sent.append(_copy(message))  # as sent, before anything outside can change it
            await send(message)

        await self.app(scope, receive, keep)
        if (
            len(sent) == 2
            and sent[1]["type"] == "http.response.body"
            and not sent[1].get("more_body", False)
        ):
            start, body = sent
            size = OVERHEAD + len(body.get("body", b""))
            kept = _kept(self._number(scope.get("route")), start, body)
            if kept is not None:
                self.cache.put(generation, entry, kept, size=size)

    def _number(self, route: Any) -> int:
        number = self._numbers.get(id(route))
        if number is None:
            number = self._numbers[id(route)] = len(self._routes)
            self._routes.append(route)  # kept alive here: its id is never another's
        return number


Kept = tuple[Any, ...]
"""An answer kept, flat: its route's number, status and body, then each header's name and value.
Nothing in it is a container but the tuple itself, so the garbage collector stops looking at it
at its first collection: thousands of answers kept add nothing to its pauses."""
START_KEYS = frozenset(("type", "status", "headers"))
BODY_KEYS = frozenset(("type", "body", "more_body"))


def _kept(number: int, start: Message, body: Message) -> Kept | None:
    """`start` and `body` flattened; None when they say more than status, headers and body."""
    if not START_KEYS.issuperset(start) or not BODY_KEYS.issuperset(body):
        return None
    flat: list[Any] = [number, start["status"], bytes(body.get("body", b""))]
    for name, value in start.get("headers", ()):
        flat += (bytes(name), bytes(value))
    return tuple(flat)


def _sent(kept: Kept) -> tuple[Message, Message]:
    """The start and body messages of an answer kept, made anew (outer middleware may add to
    the headers list)."""
    _, status, body, *flat = kept
    headers = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
    return (
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    )


def _keepable(scope: Scope, start: Message) -> bool:
    """A 200 of a route marked `@cached`, asked the canonical way (`_canonical`)."""
    endpoint = scope.get("endpoint")
    allowed = cached_query(endpoint)
    if start["status"] != 200 or allowed is None:
        return False
    return _canonical(scope, allowed, _whole_numbers(endpoint))


WHOLE = re.compile(r"0|-?[1-9][0-9]*")
"""A whole number as `str(int(...))` writes it."""


def _canonical(scope: Scope, allowed: frozenset[str], whole: frozenset[str]) -> bool:
    """Whether the request's URL is the one way of writing what the route was asked: its query
    names only `allowed` parameters, each once, sorted, escaped as `urlencode` escapes, and
    each parameter in `whole` (path or query) is written as `str(int(value))` writes it."""
    raw: bytes = scope["query_string"]
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True) if raw else []
    names = [name for name, _ in pairs]
    if names != sorted(set(names)) or not all(name in allowed for name in names):
        return False
    if raw and urlencode(pairs).encode("latin-1") != raw:
        return False
    values = [*scope.get("path_params", {}).items(), *pairs]
    return all(WHOLE.fullmatch(str(value)) for name, value in values if name in whole)


def _whole_numbers(endpoint: Any) -> frozenset[str]:
    """The names of the endpoint's parameters that are whole numbers (worked out once)."""
    found: frozenset[str] | None = getattr(endpoint, "whole_numbers", None)
    if found is None:
        hints = typing.get_type_hints(endpoint)  # Annotated[...] and `X | None` resolved
        found = frozenset(name for name, hint in hints.items() if _is_int(hint))
        endpoint.whole_numbers = found
    return found


def _is_int(hint: Any) -> bool:
    return hint is int or (int in typing.get_args(hint) and bool not in typing.get_args(hint))


def _copy(message: Message) -> Message:
    """A message that can be changed without changing `message` (its headers list included)."""
    if "headers" in message:
        return {**message, "headers": list(message["headers"])}
    return dict(message)


def _digest(path: str, query: bytes, keys: list[bytes]) -> bytes:
    """What identifies a request here; a digest, so no API key is held in memory."""
    digest = hashlib.blake2b(digest_size=32)
    for part in (path.encode("utf-8", "surrogateescape"), query, *keys):
        digest.update(len(part).to_bytes(8, "big") + part)  # length first: no two alike
    return digest.digest()
