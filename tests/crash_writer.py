"""A child process for the crash test: loads a district, then writes snapshots until killed.

Run as `python -m tests.crash_writer DATABASE_URL [SIGNING_KEY]`. It prints "ready" once the
district is stored, then alternately computes a draft and publishes it (first publication, then
corrections; signed with SIGNING_KEY when given), each in its own transaction, forever: the
test kills it with SIGKILL at a random moment, mid-write as often as not.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sqlalchemy import select

from scoring.shipped import load_rules
from scoring.synthetic import synthetic_district
from service.core.clock import now
from service.core.database import make_engine, writing
from service.core.migrate import upgrade
from service.core.tables import institutions
from service.ratings import publishing, snapshots
from service.records import storage

YEAR = 2023
SIZE = 1000  # institutions: big enough that writing a snapshot takes about a second


def main(url: str, signing_key: Path | None = None) -> None:
    rules = load_rules()
    engine = make_engine(url)
    upgrade(engine)
    with writing(engine) as conn:
        if conn.execute(select(institutions.c.uscc).limit(1)).first() is None:
            inst, found = synthetic_district(SIZE, SIZE * 3, year=YEAR, seed=7, rules=rules)
            storage.import_frames(
                conn, institution_frame=inst, finding_frame=found, by="crash", at=now()
            )
    print("ready", flush=True)
    n = 0
    while True:
        n += 1
        with writing(engine) as conn:
            publishing.compute_draft(conn, rules=rules, year=YEAR, scale="four", by="crash")
        with writing(engine) as conn:
            first = snapshots.published(conn, year=YEAR, required=False) is None
            reason = None if first else f"correction {n}"
            publishing.publish(
                conn,
                year=YEAR,
                revision=None,
                reason=reason,
                by="crash",
                signing_key=signing_key,
            )


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]) if len(sys.argv) > 2 else None)
