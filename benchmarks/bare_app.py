"""The bare FastAPI app the HTTP benchmark measures the service against.

    python -m benchmarks.bare_app --port P [--workers N]

One endpoint returning a small JSON document, nothing else: no middleware, no database, no
dependencies. It is served by `uvicorn.run` with exactly the arguments `credit-rating serve`
passes (`UVICORN_SETTINGS`, plus host, port and workers), so the two processes differ only in
the application. `/bare` is `async def`, the framework's ceiling; `/bare-sync` is a plain
`def` (run in the thread pool, as the service's routes are), reported for comparison only.
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn
from fastapi import FastAPI

UVICORN_SETTINGS: dict[str, Any] = {"log_level": "warning"}
"""`credit-rating serve`'s uvicorn arguments besides host, port and workers (loop and http
are left at uvicorn's `auto`, i.e. uvloop and httptools when installed, as there)."""


def create_app() -> FastAPI:
    app = FastAPI(title="bare", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/bare")
    async def bare() -> dict[str, str]:
        return {"status": "ok", "service": "bare"}

    @app.get("/bare-sync")
    def bare_sync() -> dict[str, str]:
        return {"status": "ok", "service": "bare"}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bare_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    uvicorn.run(
        "benchmarks.bare_app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        **UVICORN_SETTINGS,
    )


if __name__ == "__main__":
    main()
