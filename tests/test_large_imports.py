"""Imports larger than what a database accepts in one statement, on SQLite and on PostgreSQL.

An import used to look up every id it brought in one `IN (…)`: SQLite refuses more than its
build's limit of bound parameters (250,000 on Debian's, 32,766 by default), PostgreSQL more
than 65,535. Storage now looks up and inserts in bounded batches, still in the caller's one
transaction, so a large import is still all or nothing. The district comes from
`scoring.synthetic` (valid by construction, built in well under a second) and is stored with
`storage.import_frames` exactly as `import_files` stores validated frames.
"""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError

from scoring.shipped import load_rules
from scoring.synthetic import synthetic_district
from service.core.clock import now
from service.core.database import reading, writing
from service.core.errors import Conflict
from service.core.tables import findings, institutions
from service.records import storage

N_INSTITUTIONS = 70_000  # more ids than PostgreSQL takes in one statement
N_FINDINGS = 300_000  # more than the 250,000 of Debian's SQLite, and PostgreSQL's 65,535


@pytest.fixture(scope="module")
def district() -> tuple[pd.DataFrame, pd.DataFrame]:
    return synthetic_district(N_INSTITUTIONS, N_FINDINGS, year=2023, seed=9, rules=load_rules())


def stored(engine: Engine) -> tuple[int, int]:
    with reading(engine) as conn:
        return (
            conn.scalar(select(func.count()).select_from(institutions)) or 0,
            conn.scalar(select(func.count()).select_from(findings)) or 0,
        )


def import_district(
    engine: Engine, inst: pd.DataFrame, found: pd.DataFrame | None
) -> storage.ImportSummary:
    with writing(engine) as conn:
        return storage.import_frames(
            conn, institution_frame=inst, finding_frame=found, by="tests", at=now()
        )


def test_300k_findings_import_then_reimport_as_unchanged(
    engine: Engine, district: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    inst, found = district
    first = import_district(engine, inst, found)
    assert first == storage.ImportSummary(N_INSTITUTIONS, 0, N_FINDINGS, 0)
    assert stored(engine) == (N_INSTITUTIONS, N_FINDINGS)
    # The same files again: every row is looked up, found and left alone.
    again = import_district(engine, inst, found)
    assert again == storage.ImportSummary(0, 0, 0, N_FINDINGS)
    assert stored(engine) == (N_INSTITUTIONS, N_FINDINGS)


def test_an_import_refused_in_its_last_batch_stores_nothing(engine: Engine) -> None:
    """The database refuses the very last row, after every earlier batch was written: the
    whole import, institutions included, is rolled back. (Smaller than the district above, to
    be quick, but many batches of each kind all the same.)"""
    inst, found = synthetic_district(3_000, 30_000, year=2023, seed=10, rules=load_rules())
    assert len(found) > 2 * storage.MAX_PARAMETERS
    assert len(inst) > 2 * storage.rows_per_statement(institutions)
    ids = found["finding_id"].tolist()
    ids[-1] = ids[0]  # a new id, twice: refused only when the last batch is inserted
    with pytest.raises(IntegrityError):
        import_district(engine, inst, found.assign(finding_id=ids))
    assert stored(engine) == (0, 0)


def test_changed_institutions_are_updated_in_batches(engine: Engine) -> None:
    inst, _ = synthetic_district(3_000, 0, year=2023, seed=11, rules=load_rules())
    assert len(inst) > 2 * storage.rows_per_statement(institutions)
    import_district(engine, inst, None)
    renamed = inst.assign(name=inst["name"] + "（更名）")
    assert import_district(engine, renamed, None) == storage.ImportSummary(0, 3_000, 0, 0)
    with reading(engine) as conn:
        names = {
            uscc: name
            for uscc, name in conn.execute(select(institutions.c.uscc, institutions.c.name))
        }
    assert names == dict(zip(renamed["uscc"], renamed["name"], strict=True))


def test_a_conflict_in_the_last_batch_stores_nothing_of_the_import(engine: Engine) -> None:
    """A finding on record comes again, changed, as the import's very last row: refused, and
    none of the import's earlier batches stays."""
    inst, found = synthetic_district(3_000, 30_000, year=2023, seed=12, rules=load_rules())
    import_district(engine, inst, found.iloc[:1])
    changed = found.iloc[:1].assign(note=found["note"].iloc[0] + "（改）")
    with pytest.raises(Conflict, match=found["finding_id"].iloc[0]):
        import_district(engine, inst, pd.concat([found.iloc[1:], changed], ignore_index=True))
    assert stored(engine) == (3_000, 1)
