"""A process killed with SIGKILL while writing a snapshot leaves all of it or none of it.

The writer (tests/crash_writer.py) computes and publishes snapshots of a 1000-institution
district in a loop; we kill it at random moments, many times, and after each kill check that
every stored snapshot has every row, every hash and signature matches and the chain is
unbroken.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from service.core.database import make_engine, reading
from service.core.tables import institutions, snapshot_rows
from service.ratings import integrity, snapshots
from tests.servers import ROOT

KILLS = 6


def test_sigkill_while_writing_leaves_whole_snapshots_and_an_intact_chain(
    database_url: str, tmp_path: Path
) -> None:
    rng = random.Random(20231203)
    key_file = tmp_path / "signing.pem"
    public_key = integrity.create_signing_key(key_file).public_key()
    engine = make_engine(database_url)
    seen = 0
    try:
        for kill in range(KILLS):
            writer = subprocess.Popen(
                [sys.executable, "-m", "tests.crash_writer", database_url, str(key_file)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert writer.stdout is not None
            assert writer.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.5, 5.0))
            writer.send_signal(signal.SIGKILL)
            writer.wait()
            assert writer.returncode == -signal.SIGKILL, f"kill {kill}: writer ended by itself"

            with reading(engine) as conn:
                size = conn.scalar(select(func.count()).select_from(institutions))
                stored = snapshots.every(conn)
                for snap in stored:
                    rows = conn.scalar(
                        select(func.count())
                        .select_from(snapshot_rows)
                        .where(snapshot_rows.c.snapshot_id == snap.id)
                    )
                    listed = len(json.loads(snap.not_rated or "[]"))  # closed: not rated
                    assert rows + listed == size, (
                        f"kill {kill}: snapshot {snap.revision} has {rows} rows and {listed} "
                        "institutions not rated"
                    )
                assert integrity.verify(conn, public_keys=[public_key]) == [], f"kill {kill}"
                found = integrity.check(conn, public_keys=[public_key])
                assert found.signed == sum(s.status == "published" for s in stored)
            seen = len(stored)
        assert seen >= 2, "the writer never got a snapshot written: kills came too early"
    finally:
        engine.dispose()
