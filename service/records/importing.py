"""Importing institution and finding files into the database, all or nothing; and one finding.

Shared by `credit-rating import`, `POST /v1/imports` and `POST /v1/findings`. Every file is read
and validated against the rules and against the institutions already on record before anything
is written; any problem in any file means nothing is stored, and one report lists them all. A
single finding goes through the same checks as a file of them.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from scoring.input_files import read_table
from scoring.inputs import validate_findings, validate_institutions
from scoring.problems import raise_problems
from scoring.rules import RuleSet
from service.core.clock import now
from service.core.database import writing
from service.core.errors import Conflict, InvalidInput
from service.records import storage

MAX_FILES = 20
"""Files in one upload."""


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
        raise Conflict(f"the import conflicts with itself or the record: {exc.orig}") from None


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


def import_uploads(
    engine: Engine, uploads: Sequence[tuple[str, BinaryIO]], *, rules: RuleSet, by: str
) -> storage.ImportSummary:
    """Import uploaded files (each a name and its content) as `import_files` imports files.

    Errors name each file by its own name, never by where it was kept meanwhile.
    """
    if len(uploads) > MAX_FILES:
        raise InvalidInput(f"at most {MAX_FILES} files per import, not {len(uploads)}")
    with tempfile.TemporaryDirectory() as folder:
        paths, names = [], []
        for n, (upload_name, content) in enumerate(uploads):
            name = Path(upload_name or f"upload-{n}").name
            path = Path(folder) / f"{n}-{name}"
            with path.open("wb") as out:
                shutil.copyfileobj(content, out)
            paths.append(path)
            names.append(name)
        return import_files(engine, paths, rules=rules, by=by, names=names)


def record_finding(
    conn: Connection, finding: Mapping[str, Any], *, rules: RuleSet, by: str
) -> dict[str, Any]:
    """Record one finding (a mapping of the input contract's fields), checked by the very code
    that checks a file of findings; recording the same finding again is a no-op."""
    storage.get_institution(conn, finding["uscc"])  # NotFound for an institution not on record
    cells = {name: "" if value is None else str(value) for name, value in finding.items()}
    raw = pd.DataFrame([cells], index=[1], dtype="str")
    frame, problems = validate_findings(
        raw, file="the finding", rules=rules, known_uscc=[finding["uscc"]]
    )
    raise_problems(problems)
    [record] = storage.finding_records(frame)
    storage.import_frames(conn, institution_frame=None, finding_frame=frame, by=by, at=now())
    return storage.get_finding(conn, record["finding_id"])
