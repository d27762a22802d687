"""Repeated reads answered from memory, before FastAPI is reached.

A rating lookup is a few microseconds of work wrapped in much more of FastAPI's (routing,
dependency solving, validation, serialisation). Yet its answer depends only on the request's
path, its query and the API key it carries, and changes only when the database does. So the
first successful answer of a route marked `@cached` is kept, whole, under exactly those three,
and the same request is answered with the same bytes until the next commit anywhere (the
`ReadCache` generation, SQLite's `PRAGMA data_version`).

Nothing about access is decided here: a request is only ever answered from memory with what
the route itself answered to the very same path, query and key, and only 200s are kept. A
bad, revoked (a commit) or under-privileged key, a bad year or code, a missing snapshot all
reach the route and get its answer. On PostgreSQL `ReadCache` keeps nothing, so neither does
this.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.readcache import ReadCache

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])

API_KEY = b"x-api-key"


def cached(endpoint: Endpoint) -> Endpoint:
    """Mark a GET route whose answer depends on nothing but path, query, key and the database."""
    endpoint.cached_response = True  # type: ignore[attr-defined]
    return endpoint


class ResponseCache:
    def __init__(self, app: ASGIApp, cache: ReadCache) -> None:
        self.app = app
        self.cache = cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        generation = self.cache.generation()
        if generation is None:
            await self.app(scope, receive, send)
            return
        keys = tuple(value for name, value in scope["headers"] if name == API_KEY)
        entry = ("response", scope["path"], scope["query_string"], keys)
        hit: tuple[Any, Message, Message] | None = self.cache.get(entry)
        if hit is not None:
            route, start, body = hit
            scope["route"] = route  # as routing would have set it (for the metrics)
            await send(start)
            await send(body)
            return

        sent: list[Message] = []

        async def keep(message: Message) -> None:
            sent.append(message)
            await send(message)

        await self.app(scope, receive, keep)
        endpoint = scope.get("endpoint")
        if (
            getattr(endpoint, "cached_response", False)
            and len(sent) == 2
            and sent[0]["type"] == "http.response.start"
            and sent[0]["status"] == 200
            and not sent[1].get("more_body", False)
        ):
            answer = (scope.get("route"), sent[0], sent[1])
            self.cache.put(generation, entry, answer, size=len(sent[1].get("body", b"")))
