"""A child process for the SIGKILL test: runs the sharing job until the test kills it.

Run as `python -m tests.share_worker DATABASE_URL PLATFORM_URL SECRET`. Its client waits a
long time for an answer, so the test can kill it while a request is in flight.
"""

from __future__ import annotations

import sys

from service.core.database import make_engine
from service.sharing import delivery
from service.sharing.delivery import RetryPolicy
from service.sharing.platform import HttpPlatform


def main(database_url: str, platform_url: str, secret: str) -> None:
    engine = make_engine(database_url)
    platform = HttpPlatform(platform_url, secret, timeout=60)
    delivery.run(engine, platform, policy=RetryPolicy(attempts=3, base=0.01, cap=0.01))


if __name__ == "__main__":
    main(*sys.argv[1:4])
