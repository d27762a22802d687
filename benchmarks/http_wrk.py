"""The load generator when `wrk` is installed: a Lua script that rotates over the paths.

wrk does the requests from C and reports latency percentiles; the script adds the rotation over
the credit codes, the supervisor key, the `?fresh=N` parameter and a JSON summary line.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

WRK_SCRIPT = """
local paths = {%(paths)s}
local key = %(key)s
local fresh = %(fresh)s
if key ~= nil then wrk.headers["X-API-Key"] = key end
local counter = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("offset", math.random(#paths))
  thread:set("id", threads)
end
function request()
  counter = counter + 1
  local path = paths[((counter + (offset or 0)) %% #paths) + 1]
  if fresh then path = path .. "?fresh=" .. (id or 0) .. "-" .. counter end
  return wrk.format("GET", path)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%%d,"duration_us":%%d,"bytes":%%d,"connect_errors":%%d,' ..
    '"read_errors":%%d,"write_errors":%%d,"status_errors":%%d,"timeouts":%%d,' ..
    '"mean_us":%%.1f,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"max_us":%%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_wrk(
    base: str,
    paths: list[str],
    key: str | None,
    fresh: bool,
    connections: int,
    threads: int,
    seconds: float,
    folder: Path,
) -> dict[str, Any]:
    script = folder / "rotate.lua"
    script.write_text(
        WRK_SCRIPT
        % {
            "paths": ", ".join(_lua_string(p) for p in paths),
            "key": _lua_string(key) if key else "nil",
            "fresh": "true" if fresh else "false",
        }
    )
    command = [
        "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        base,
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=False, timeout=seconds + 60)
    lines = [line for line in out.stdout.splitlines() if line.startswith("WRKJSON ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr or out.stdout}")
    raw = json.loads(lines[-1].removeprefix("WRKJSON "))
    errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors"))
    duration = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "errors": errors,
        "timeouts": raw["timeouts"],
        "duration_s": duration,
        "rps": raw["requests"] / duration,
        "mean_ms": raw["mean_us"] / 1000,
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "bytes_per_response": raw["bytes"] / max(raw["requests"], 1),
    }


def wrk_version() -> str:
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False, timeout=10)
    words = (out.stdout or out.stderr).split()
    return " ".join(words[:2]) if words else "wrk"
