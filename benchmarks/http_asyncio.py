"""The load generator when `wrk` is not installed (or with `--asyncio-client`).

Raw HTTP/1.1 keep-alive connections on asyncio (uvloop when installed): cheap enough on the
client's side to load a server on the same machine, with the same figures as wrk reports.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any


async def run_asyncio(
    base: str, paths: list[str], key: str | None, fresh: bool, connections: int, seconds: float
) -> dict[str, Any]:
    """The fallback load generator: `connections` raw HTTP/1.1 keep-alive connections."""
    host, _, port = base.removeprefix("http://").partition(":")
    extra = f"X-API-Key: {key}\r\n" if key else ""

    def request(number: int) -> bytes:
        path = paths[number % len(paths)]
        if fresh:
            path += f"?fresh={number}"
        return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode("ascii")

    latencies: list[float] = []
    counts = {"errors": 0, "bytes": 0}
    started = time.perf_counter()
    deadline = started + seconds

    async def connection(offset: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            number = offset  # offset, offset + connections, …: no two requests alike
            while time.perf_counter() < deadline:  # bounded by the deadline
                began = time.perf_counter()
                writer.write(request(number))
                number += connections
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                latencies.append(time.perf_counter() - began)
                counts["bytes"] += len(head) + len(body)
                if not head.startswith((b"HTTP/1.1 2", b"HTTP/1.0 2")):
                    counts["errors"] += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection(i) for i in range(connections)))
    duration = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> float:
        return 1000 * latencies[min(len(latencies) - 1, int(q / 100 * len(latencies)))]

    return {
        "requests": len(latencies),
        "errors": counts["errors"],
        "timeouts": 0,
        "duration_s": duration,
        "rps": len(latencies) / duration,
        "mean_ms": 1000 * statistics.fmean(latencies),
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": 1000 * latencies[-1],
        "bytes_per_response": counts["bytes"] / max(len(latencies), 1),
    }
