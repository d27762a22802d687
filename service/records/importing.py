"""Importing institution, finding and inspection files into the database, all or nothing; and
one finding.

Shared by `credit-rating import`, `POST /v1/imports` and `POST /v1/findings`. Every file is read
and validated against the rules and against the institutions already on record before anything
is written; any problem in any file means nothing is stored, and one report lists them all. A
single finding goes through the same checks as a file of them. A file's kind is told by its
columns: an inspection register names a task (`task_id`), findings an indicator. Findings
whose `reference` names an inspection task unknown to the register (the import's and the
database's) are reported (`scoring.inspections.unknown_task_references`).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from scoring.errors import Problem
from scoring.input_files import DEFAULT_LIMITS, read_raw
from scoring.inputs import (
    ENGLISH_NAMES,
    Checked,
    validate_findings,
    validate_institutions,
    warnings_of,
)
from scoring.inspections import (
    is_inspections,
    reference_column,
    unknown_task_references,
    validate_inspections,
)
from scoring.limits import ReadLimits
from scoring.problems import ProblemList, raise_problems
from scoring.rules import RuleSet
from service.core.clock import beijing_date, now
from service.core.database import writing
from service.core.errors import Conflict, TooLarge
from service.core.settings import Settings
from service.records import inspections as register
from service.records import storage

_EXTENSION = re.compile(r"[.][A-Za-z0-9]{1,16}")
_CHUNK = 1 << 20
"""Bytes of an upload copied to disk at a time."""


def is_findings(raw: pd.DataFrame) -> bool:
    """A findings file names an indicator (`indicator` or 指标); an institutions file does not."""
    names = {str(c).strip().lstrip("\ufeff").strip() for c in raw.columns}
    return "indicator" in {ENGLISH_NAMES.get(n, n) for n in names}


Files = list[tuple[str, pd.DataFrame]]
"""Raw frames of one kind, each with the name its file is called by in reports."""


@dataclass(frozen=True)
class Imported(storage.ImportSummary):
    """What an import stored, and its files' warnings: worth a look, yet stored all the same
    (e.g. a credit code registered outside its `district_code`). At most MAX_PROBLEMS are
    listed; `warnings_total` counts them all."""

    warnings: tuple[Problem, ...] = ()
    warnings_total: int = 0


def import_files(
    engine: Engine,
    paths: Sequence[Path],
    *,
    rules: RuleSet,
    by: str,
    names: Sequence[str] = (),
    limits: ReadLimits = DEFAULT_LIMITS,
) -> Imported:
    """Validate every file, then store them in one transaction (institutions first).

    `names` are how the files are called in error reports (an upload's own file name);
    by default their paths. `limits` bound what reading each file may cost (the command
    line's defaults unless the service passes its settings').
    """
    labels = list(names) or [str(p) for p in paths]
    raws: list[tuple[str, pd.DataFrame]] = []
    reading: list[ProblemList] = []
    for label, path in zip(labels, paths, strict=True):
        frame, problems = read_raw(path, limits, name=label)
        if frame is None and not problems.total:  # readers say why; this is a safety net
            problems = ProblemList.whole_file(label, "a file that can be read")
        reading.append(problems)
        if frame is not None:
            raws.append((label, frame))
    raise_problems(*reading)  # every file's reading problems, in one report
    inspection_files = [(label, raw) for label, raw in raws if is_inspections(raw.columns)]
    others = [(label, raw) for label, raw in raws if not is_inspections(raw.columns)]
    institution_files = [(label, raw) for label, raw in others if not is_findings(raw)]
    finding_files = [(label, raw) for label, raw in others if is_findings(raw)]
    return _store(engine, institution_files, finding_files, inspection_files, rules=rules, by=by)


def _store(
    engine: Engine,
    institution_files: Files,
    finding_files: Files,
    inspection_files: Files,
    *,
    rules: RuleSet,
    by: str,
) -> Imported:
    found: list[tuple[pd.DataFrame, Checked]] = []
    try:
        with writing(engine) as conn:
            checked = [validate_institutions(raw, file=label) for label, raw in institution_files]
            known = storage.known_usccs(conn).union(*(set(frame["uscc"]) for frame, _ in checked))
            found = [
                validate_findings(raw, file=label, rules=rules, known_uscc=known)
                for label, raw in finding_files
            ]
            at = now()
            registers = [
                validate_inspections(
                    raw, file=label, rules=rules, known_uscc=known, today=beijing_date(at)
                )
                for label, raw in inspection_files
            ]
            groups: list[ProblemList] = [p for _, p in checked + found + registers]
            groups += _unknown_tasks(conn, finding_files, found, registers)
            raise_problems(*groups)
            warned = warnings_of(*groups)
            summaries = [
                storage.import_frames(
                    conn, institution_frame=frame, finding_frame=None, by=by, at=at
                )
                for frame, _ in checked
            ] + [
                storage.import_frames(
                    conn, institution_frame=None, finding_frame=frame, by=by, at=at
                )
                for frame, _ in found
            ]
            stored = [register.import_register(conn, f, by=by, at=at) for f, _ in registers]
    except IntegrityError:
        # Never the database's message: it quotes the SQL and every parameter of the batch.
        conflict = _conflict([label for label, _ in finding_files], [f for f, _ in found])
    else:
        imported = Imported(
            *(
                sum(getattr(s, f) for s in summaries)
                for f in storage.ImportSummary.__dataclass_fields__
            )
        )
        return replace(
            imported,
            inspections_added=sum(added for added, _ in stored),
            inspections_unchanged=sum(same for _, same in stored),
            warnings=tuple(warned),
            warnings_total=warned.total,
        )
    raise conflict  # outside the handler, so the IntegrityError is not even its context


def _unknown_tasks(
    conn: Connection,
    finding_files: Files,
    found: list[tuple[pd.DataFrame, Checked]],
    registers: list[tuple[pd.DataFrame, Checked]],
) -> list[ProblemList]:
    """Per findings file, its findings whose reference names a task the register lacks (the
    register being the import's inspections and the database's together)."""
    tasks = pd.concat(
        [register.known_tasks(conn)]
        + [frame[["task_id", "inspected_on"]] for frame, problems in registers if not problems],
        ignore_index=True,
    )
    return [
        unknown_task_references(
            frame, tasks, file=label, rows=raw.index.tolist(), column=reference_column(raw)
        )
        for (label, raw), (frame, problems) in zip(finding_files, found, strict=True)
        if not problems.total
    ]


def _conflict(labels: list[str], frames: list[pd.DataFrame]) -> Conflict:
    """What an import that broke a unique key conflicts with, in a few words.

    Findings without a finding_id are keyed by their content, so two identical ones in an
    import collide; anything else was stored by another request meanwhile.
    """
    seen: dict[str, str] = {}
    for label, frame in zip(labels, frames, strict=False):
        given = frame["finding_id"].tolist()
        for position, record in enumerate(storage.finding_records(frame)):
            where = _row_of(label, str(given[position]), position)
            first = seen.setdefault(record["finding_id"], where)
            if first != where:
                return Conflict(
                    f"the same finding twice in this import ({first} and {where}): findings "
                    f"without a finding_id are known by their content ({record['finding_id']});"
                    " remove the duplicate or give each a finding_id. Nothing was stored"
                )
    return Conflict(
        "the import conflicts with records stored by another request at the same time; "
        "nothing was stored: try again"
    )


def _row_of(label: str, given: str, position: int) -> str:
    if given.startswith("#") and given[1:].isdigit():
        return f"{label} row {given[1:]}"
    return f"{label} finding {given}" if given else f"{label} row {position + 1}"


def import_uploads(
    engine: Engine,
    uploads: Sequence[tuple[str, BinaryIO]],
    *,
    rules: RuleSet,
    by: str,
    settings: Settings,
) -> Imported:
    """Import uploaded files (each a name and its content) as `import_files` imports files.

    At most `max_upload_files` files and `max_upload_bytes` bytes in all: each is copied to
    disk a chunk at a time with a running count, and the copy stops at the first byte over
    (TooLarge), never reading the rest. Each file is read within `settings.read_limits`.
    Errors name each file by its own name, never by where it was kept meanwhile.
    """
    if len(uploads) > settings.max_upload_files:
        raise TooLarge(
            f"at most {settings.max_upload_files} files per import (the max_upload_files "
            f"limit, CREDIT_MAX_UPLOAD_FILES), not {len(uploads)}"
        )
    with tempfile.TemporaryDirectory() as folder:
        paths, names = [], []
        left = settings.max_upload_bytes
        for n, (upload_name, content) in enumerate(uploads):
            name = re.split(r"[\\/]", upload_name)[-1] or f"upload-{n}"  # no folders, even C:\\
            # Kept as n.ext: the reader goes by the extension; nothing else of the name is used.
            suffix = Path(name).suffix
            path = Path(folder) / (str(n) + (suffix if _EXTENSION.fullmatch(suffix) else ""))
            with path.open("wb") as out:
                while chunk := content.read(min(_CHUNK, left + 1)):
                    left -= len(chunk)
                    if left < 0:
                        raise TooLarge(
                            f"at most {settings.max_upload_bytes:,} bytes in the files of one "
                            "import (the max_upload_bytes limit, CREDIT_MAX_UPLOAD_BYTES); "
                            f"{name} goes over it"
                        )
                    out.write(chunk)
            paths.append(path)
            names.append(name)
        return import_files(
            engine, paths, rules=rules, by=by, names=names, limits=settings.read_limits
        )


def record_finding(
    conn: Connection, finding: Mapping[str, Any], *, rules: RuleSet, by: str
) -> dict[str, Any]:
    """Record one finding (a mapping of the input contract's fields), checked by the very code
    that checks a file of findings (a `reference` naming a task the register lacks included);
    recording the same finding again is a no-op."""
    storage.get_institution(conn, finding["uscc"])  # NotFound for an institution not on record
    cells = {name: "" if value is None else str(value) for name, value in finding.items()}
    raw = pd.DataFrame([cells], index=[1], dtype="str")
    frame, problems = validate_findings(
        raw, file="the finding", rules=rules, known_uscc=[finding["uscc"]]
    )
    raise_problems(problems)
    raise_problems(unknown_task_references(frame, register.known_tasks(conn), file="the finding"))
    [record] = storage.finding_records(frame)
    storage.import_frames(conn, institution_frame=None, finding_frame=frame, by=by, at=now())
    return storage.get_finding(conn, record["finding_id"])
