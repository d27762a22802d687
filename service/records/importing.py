"""Importing institution and finding files into the database, all or nothing.

Shared by `credit-rating import` and `POST /v1/imports`. Every file is read and validated
against the rules and against the institutions already on record before anything is written;
any problem in any file means nothing is stored, and one report lists them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from scoring.input_files import read_table
from scoring.inputs import raise_problems, validate_findings, validate_institutions
from scoring.rules import RuleSet
from service.core.database import writing
from service.ratings.snapshots import now
from service.records import storage


def is_findings(raw: pd.DataFrame) -> bool:
    """A findings file names an indicator; an institutions file does not."""
    return "indicator" in {str(c).strip() for c in raw.columns}


def import_files(
    engine: Engine, paths: Sequence[Path], *, rules: RuleSet, by: str, names: Sequence[str] = ()
) -> storage.ImportSummary:
    """Validate every file, then store them in one transaction (institutions first).

    `names` are how the files are called in error reports (an upload's own file name);
    by default their paths.
    """
    labels = list(names) or [str(p) for p in paths]
    raws = [(label, read_table(path)) for label, path in zip(labels, paths, strict=True)]
    institution_files = [(label, raw) for label, raw in raws if not is_findings(raw)]
    finding_files = [(label, raw) for label, raw in raws if is_findings(raw)]
    try:
        return _store(engine, institution_files, finding_files, rules=rules, by=by)
    except IntegrityError as exc:  # e.g. the same new finding_id in two files of one import
        raise storage.Conflict(
            f"the import conflicts with itself or the record: {exc.orig}"
        ) from None


def _store(
    engine: Engine,
    institution_files: list[tuple[str, pd.DataFrame]],
    finding_files: list[tuple[str, pd.DataFrame]],
    *,
    rules: RuleSet,
    by: str,
) -> storage.ImportSummary:
    with writing(engine) as conn:
        checked = [validate_institutions(raw, file=label) for label, raw in institution_files]
        known = storage.known_usccs(conn).union(*(set(frame["uscc"]) for frame, _ in checked))
        found = [
            validate_findings(raw, file=label, rules=rules, known_uscc=known)
            for label, raw in finding_files
        ]
        raise_problems(*(problems for _, problems in checked + found))
        at = now()
        summaries = [
            storage.import_frames(conn, institution_frame=frame, finding_frame=None, by=by, at=at)
            for frame, _ in checked
        ] + [
            storage.import_frames(conn, institution_frame=None, finding_frame=frame, by=by, at=at)
            for frame, _ in found
        ]
    return storage.ImportSummary(
        *(sum(getattr(s, f) for s in summaries) for f in storage.ImportSummary.__dataclass_fields__)
    )
