"""The fake platform by hand, for a demo: `python -m tests.fake_platform --secret S ...`.

Serves until Ctrl-C (or SIGTERM), printing every request it receives and the records of each
batch it applies, so one can watch the sharing job deliver through scripted faults.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from .faults import parse_fault
from .platform import FakePlatform
from .request_log import RequestLog
from .wire import ENDPOINT


def _printer(show: int) -> Callable[[RequestLog, dict[str, Any] | None], None]:
    """Print each request as it is answered: one line, then the batch's first `show` records."""
    out = threading.Lock()

    def emit(lines: Iterable[str]) -> None:
        with out:
            for line in lines:
                print(line, flush=True)

    def lines(entry: RequestLog, body: dict[str, Any] | None) -> Iterator[str]:
        stamp = datetime.now().strftime("%H:%M:%S.%f")[:-3]
        answer = "dropped, no answer" if entry.status is None else str(entry.status)
        parts = [stamp, entry.method, entry.path]
        if entry.method == "POST":
            parts.append(f"key={entry.key}")
            parts.append("signature ok" if entry.signature_ok else "SIGNATURE BAD")
            if entry.fault is not None:
                parts.append(f"fault={entry.fault.label}")
        parts.append(f"-> {answer}")
        if entry.receipt_id:
            parts.append(f"receipt={entry.receipt_id}")
        if entry.applied:
            parts.append("APPLIED")
        if entry.body_matches_applied is False:
            parts.append("(BODY DIFFERS FROM THE APPLIED ONE)")
        yield "  ".join(parts)
        if body is None or not entry.applied:
            return
        records = body.get("records", [])
        yield (
            f"    {body.get('year')} revision {body.get('revision')}  "
            f"batch {body.get('batch_id')}  {len(records)} records  "
            f"by {body.get('evaluated_by', {}).get('name')}  on {body.get('evaluated_on')}"
            + (f"  supersedes {', '.join(body['supersedes'])}" if body.get("supersedes") else "")
        )
        for record in records[:show]:
            yield (
                f"    {record['uscc']}  {record['grade']:>2}  {record['score']!s:>5}"
                f"{'  vetoed' if record['vetoed'] else ''}  {record['name']}"
            )
        if len(records) > show:
            yield f"    … and {len(records) - show} more"

    return lambda entry, body: emit(list(lines(entry, body)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fake_platform",
        description="Run the fake 双随机、一公开 platform until Ctrl-C, printing what it receives.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100, help="0 picks a free port")
    parser.add_argument("--secret", required=True, help="the shared CREDIT_PLATFORM_SECRET")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        type=parse_fault,
        metavar="FAULT",
        help="a fault for the next request, in order (repeat the option): 500 (any 5xx), "
        "429[:SECONDS], slow:SECONDS[:applies], drop-before, drop-after, duplicate-ack, "
        "422[:MESSAGE]",
    )
    parser.add_argument("--show", type=int, default=10, help="records printed per batch")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C or kill: stop cleanly, no traceback
        signal.signal(signum, lambda *_: stop.set())
    platform = FakePlatform(
        args.secret, host=args.host, port=args.port, on_request=_printer(args.show)
    )
    try:
        platform.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    platform.script(*args.fault)
    print(f"fake platform listening on {platform.url}  (POST {ENDPOINT})", flush=True)
    print(f"  export CREDIT_PLATFORM_URL={platform.url}", flush=True)
    print(f"  export CREDIT_PLATFORM_SECRET={args.secret}", flush=True)
    if args.fault:
        print("  scripted faults: " + ", ".join(f.label for f in args.fault), flush=True)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        platform.stop()
    applied = platform.applied
    print(
        f"stopped: {len(applied)} batches, {sum(len(b['records']) for b in applied.values())} "
        "records applied",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
