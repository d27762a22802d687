"""Storage and snapshots, on SQLite and on PostgreSQL: what the database keeps, and what it refuses.

Each test runs against both databases (the `database_url` fixture). Raw SQL plays the part of
someone editing the database directly: the guards must refuse it, and when the guards are
dropped first, `verify` must still notice.
"""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError, ProgrammingError
from typer.testing import CliRunner

from scoring.engine import rate
from scoring.errors import InputError
from scoring.input_files import read_inputs
from scoring.rules import RuleSet
from scoring.shipped import SAMPLE_DIR, load_rules
from service.api import keys
from service.cli import commands
from service.core.database import make_engine, reading, writing
from service.core.errors import Conflict, NotFound
from service.core.migrate import upgrade
from service.core.tables import api_keys, findings, institutions, snapshot_rows
from service.core.tables import snapshots as snapshot_table
from service.ratings import integrity, publishing, snapshots
from service.records import storage
from service.records.importing import import_files
from tests.conftest import drop_guards
from tests.servers import ROOT, create_database

RULES: RuleSet = load_rules()
SAMPLE_FILES = [SAMPLE_DIR / "institutions.csv", SAMPLE_DIR / "findings.csv"]
IMMUTABLE = "published snapshots are immutable"
SAMPLE_INSTITUTIONS = 16
SAMPLE_FINDINGS = 65


# Helpers ---------------------------------------------------------------------------------------


def compute(engine: Engine, year: int = 2023, *, by: str = "tests") -> snapshots.Snapshot:
    with writing(engine) as conn:
        return publishing.compute_draft(conn, rules=RULES, year=year, scale="four", by=by)


def publish(
    engine: Engine,
    year: int = 2023,
    *,
    revision: int | None = None,
    reason: str | None = None,
    by: str = "tests",
) -> snapshots.Snapshot:
    with writing(engine) as conn:
        return publishing.publish(conn, year=year, revision=revision, reason=reason, by=by)


def verify(engine: Engine) -> list[str]:
    with reading(engine) as conn:
        return integrity.verify(conn)


def sql(engine: Engine, statement: str) -> None:
    """One raw statement in a transaction of its own, as someone at a database prompt."""
    with engine.begin() as conn:
        conn.exec_driver_sql(statement)


def refused(engine: Engine, statement: str, message: str) -> None:
    with pytest.raises(DBAPIError, match=message):
        sql(engine, statement)


def count(engine: Engine, table: Any) -> int:
    with reading(engine) as conn:
        return int(conn.scalar(select(func.count()).select_from(table)) or 0)


def sample_rows(name: str) -> list[dict[str, str]]:
    with (SAMPLE_DIR / name).open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def sample() -> tuple[Any, Any]:
    """The sample district read from its files, exactly as `credit-rating rate` reads it."""
    return read_inputs(SAMPLE_FILES[0], SAMPLE_FILES[1], rules=RULES)


# Drafts, publication, corrections ------------------------------------------------------------


def test_a_draft_holds_the_engines_rating_of_every_sample_institution(
    loaded: Engine, sample: tuple[Any, Any]
) -> None:
    draft = compute(loaded, 2023)
    with reading(loaded) as conn:
        rows = snapshots.rows_of(conn, draft)
    expected = rate(*sample, RULES, 2023, scale="four")

    assert draft.status == "draft" and draft.revision == 1 and draft.chain_seq is None
    assert draft.scale == "four" and draft.ruleset_version == RULES.version
    assert len(rows) == SAMPLE_INSTITUTIONS
    stored = {r["uscc"]: (r["score"], r["grade"], bool(r["vetoed"])) for r in rows}
    rated = {
        r["uscc"]: (int(r["score"]), str(r["grade"]), bool(r["vetoed"]))
        for r in expected.to_dict("records")
    }
    assert stored == rated
    assert len({grade for _, grade, _ in stored.values()}) > 1  # a district, not one grade


def test_a_draft_has_the_hash_of_rating_the_sample_files_directly(
    loaded: Engine, sample: tuple[Any, Any]
) -> None:
    """The database gives the engine exactly what the files give it: same digest, same hash."""
    header, rows = publishing.rate_rows(*sample, RULES, 2023, "four")
    draft = compute(loaded, 2023)
    assert draft.input_digest == header["input_digest"]
    assert draft.content_hash == integrity.content_hash(header, rows)


def test_publishing_makes_the_draft_the_years_official_result(loaded: Engine) -> None:
    draft = compute(loaded, 2023)
    with reading(loaded) as conn:
        assert snapshots.published(conn, year=2023, required=False) is None

    done = publish(loaded, 2023, by="李科长")

    assert (done.id, done.status, done.revision) == (draft.id, "published", 1)
    assert done.content_hash == draft.content_hash
    assert done.published_by == "李科长" and done.published_at is not None
    assert (done.chain_seq, done.prev_hash) == (1, integrity.GENESIS)
    assert done.supersedes is None and done.reason is None
    with reading(loaded) as conn:
        assert snapshots.published(conn, year=2023) == done
    assert verify(loaded) == []


def test_publishing_a_published_year_again_without_a_new_draft_is_a_conflict(
    loaded: Engine,
) -> None:
    compute(loaded, 2023)
    publish(loaded, 2023)
    with pytest.raises(Conflict, match="already published"):
        publish(loaded, 2023)
    with pytest.raises(Conflict, match="already published"):
        publish(loaded, 2023, revision=1, reason="again")
    with pytest.raises(NotFound):
        publish(loaded, 2024)  # nothing computed for 2024


def test_recomputing_a_year_from_the_same_inputs_reproduces_its_content_hash(
    loaded: Engine,
) -> None:
    first = compute(loaded, 2023)
    publish(loaded, 2023)
    again = compute(loaded, 2023)
    other_year = compute(loaded, 2024)

    assert again.revision == 2 and again.status == "draft"
    assert again.content_hash == first.content_hash
    assert again.input_digest == first.input_digest
    assert other_year.content_hash != first.content_hash


def test_the_content_hash_is_the_same_on_sqlite_and_postgresql(
    tmp_path: Path, postgres_admin: str
) -> None:
    hashes = []
    for url in (f"sqlite:///{tmp_path / 'one.db'}", create_database(postgres_admin)):
        engine = make_engine(url)
        try:
            upgrade(engine)
            import_files(engine, SAMPLE_FILES, rules=RULES, by="tests")
            hashes.append((compute(engine, 2023).content_hash, compute(engine, 2022).content_hash))
        finally:
            engine.dispose()
    assert hashes[0] == hashes[1]


def revoke_one_costly_finding(engine: Engine, year: int) -> tuple[str, str, int]:
    """Revoke a finding that alone costs its institution points: (uscc, finding_id, points)."""
    draft = compute(engine, year)
    with reading(engine) as conn:
        rows = snapshots.rows_of(conn, draft)
    for row in rows:
        explanation = explanation_of(draft, row)
        for indicator in explanation["indicators"]:
            if indicator["lost"] > 0 and len(indicator["findings"]) == 1:
                finding_id = indicator["findings"][0]["finding_id"]
                with writing(engine) as conn:
                    storage.revoke(
                        conn, finding_id=finding_id, by="王审核", reason="复议撤销", at=now()
                    )
                return row["uscc"], finding_id, indicator["lost"]
    raise AssertionError("the sample has no finding that alone costs points")


def explanation_of(snapshot: snapshots.Snapshot, row: dict[str, Any]) -> dict[str, Any]:
    return snapshots.explained(snapshot, row).model_dump(mode="json")


def now() -> datetime:
    return datetime.now(UTC)


def score_of(engine: Engine, snapshot: snapshots.Snapshot, uscc: str) -> int:
    with reading(engine) as conn:
        return int(snapshots.row_of(conn, snapshot, uscc)["score"])


def test_a_correction_needs_a_reason_and_supersedes_the_published_revision(
    loaded: Engine,
) -> None:
    compute(loaded, 2023)
    first = publish(loaded, 2023)
    uscc, _, points = revoke_one_costly_finding(loaded, 2023)  # computes revision 2 first
    draft = compute(loaded, 2023)  # revision 3, without the revoked finding

    for no_reason in (None, ""):
        with pytest.raises(Conflict, match="needs a reason"):
            publish(loaded, 2023, reason=no_reason)
    with reading(loaded) as conn:
        assert snapshots.published(conn, year=2023) == first
    corrected = publish(loaded, 2023, reason="复议撤销原检查记录")
    with pytest.raises(Conflict, match="older than the published"):
        publish(loaded, 2023, revision=2, reason="stale")

    assert corrected.revision == draft.revision == 3 and corrected.status == "published"
    assert corrected.supersedes == 1 and corrected.reason == "复议撤销原检查记录"
    assert corrected.prev_hash == first.chain_hash and corrected.chain_seq == 2
    assert corrected.content_hash != first.content_hash
    with reading(loaded) as conn:
        assert snapshots.published(conn, year=2023) == corrected
        assert snapshots.get(conn, 2023, 1) == first
        assert len(snapshots.rows_of(conn, first)) == SAMPLE_INSTITUTIONS
        statuses = [s.status for s in snapshots.revisions(conn, year=2023)]
    assert statuses == ["published", "draft", "published"]
    assert score_of(loaded, corrected, uscc) == score_of(loaded, first, uscc) + points
    assert verify(loaded) == []


# What the database itself refuses -----------------------------------------------------------


@pytest.fixture
def published_2023(loaded: Engine) -> snapshots.Snapshot:
    compute(loaded, 2023)
    return publish(loaded, 2023)


def test_a_published_snapshot_cannot_be_updated_or_deleted_by_raw_sql(
    loaded: Engine, published_2023: snapshots.Snapshot
) -> None:
    sid = published_2023.id
    for statement in (
        f"UPDATE snapshots SET reason = 'edited' WHERE id = {sid}",
        f"UPDATE snapshots SET status = 'draft' WHERE id = {sid}",
        f"UPDATE snapshots SET content_hash = 'sha256:0' WHERE id = {sid}",
        f"DELETE FROM snapshots WHERE id = {sid}",
        f"UPDATE snapshot_rows SET grade = 'A' WHERE snapshot_id = {sid}",
        f"UPDATE snapshot_rows SET score = score + 1 WHERE snapshot_id = {sid}",
        f"DELETE FROM snapshot_rows WHERE snapshot_id = {sid}",
        "INSERT INTO snapshot_rows (snapshot_id, uscc, name, licence_no, score, grade, vetoed, "
        f"vetoes, points, explanation) VALUES ({sid}, '52120111MJ0700001F', 'x', 'x', 1000, "
        "'A', false, '[]', '{}', '{}')",
    ):
        refused(loaded, statement, IMMUTABLE)

    with reading(loaded) as conn:
        assert snapshots.get(conn, 2023, 1) == published_2023
        assert len(snapshots.rows_of(conn, published_2023)) == SAMPLE_INSTITUTIONS
    assert verify(loaded) == []


def test_drafts_stay_editable_so_the_guards_are_about_publication(loaded: Engine) -> None:
    draft = compute(loaded, 2023)
    sql(loaded, f"UPDATE snapshot_rows SET score = 0 WHERE snapshot_id = {draft.id}")
    assert verify(loaded) == [
        f"snapshot 2023 revision 1 (id {draft.id}): rows do not match its content hash"
    ]


def test_findings_cannot_be_deleted_and_a_revoked_finding_is_final(loaded: Engine) -> None:
    with pytest.raises(IntegrityError, match="never deleted"):  # a constraint, not a crash
        sql(loaded, "DELETE FROM findings WHERE finding_id = 'XQ-2023-0001'")
    refused(loaded, "DELETE FROM findings", "never deleted")
    assert count(loaded, findings) == SAMPLE_FINDINGS

    with writing(loaded) as conn:
        storage.revoke(conn, finding_id="XQ-2023-0001", by="王审核", reason="异议成立", at=now())
    refused(
        loaded, "UPDATE findings SET status = 'active' WHERE finding_id = 'XQ-2023-0001'", "final"
    )
    refused(
        loaded, "UPDATE findings SET revoke_reason = '' WHERE finding_id = 'XQ-2023-0001'", "final"
    )
    with writing(loaded) as conn, pytest.raises(Conflict, match="already revoked"):
        storage.revoke(conn, finding_id="XQ-2023-0001", by="x", reason="again", at=now())
    with writing(loaded) as conn, pytest.raises(NotFound):
        storage.revoke(conn, finding_id="XQ-NOPE", by="x", reason="x", at=now())


def test_revoking_records_who_when_and_why_and_the_finding_stops_counting(
    loaded: Engine,
) -> None:
    before = compute(loaded, 2023)
    started = now()
    uscc, finding_id, points = revoke_one_costly_finding(loaded, 2023)
    after = compute(loaded, 2023)

    with reading(loaded) as conn:
        revoked = storage.get_finding(conn, finding_id)
        row = snapshots.row_of(conn, after, uscc)
    assert revoked["status"] == "revoked"
    assert (revoked["revoked_by"], revoked["revoke_reason"]) == ("王审核", "复议撤销")
    revoked_at = revoked["revoked_at"]
    if revoked_at.tzinfo is None:
        revoked_at = revoked_at.replace(tzinfo=UTC)
    assert started <= revoked_at <= now()
    assert count(loaded, findings) == SAMPLE_FINDINGS  # kept on record

    assert score_of(loaded, after, uscc) == score_of(loaded, before, uscc) + points
    explanation = explanation_of(after, row)
    assert [n["finding"]["finding_id"] for n in explanation["not_counted"]] == [finding_id]
    assert after.input_digest != before.input_digest


# Verification -------------------------------------------------------------------------------


def publish_years(engine: Engine, *years: int) -> list[snapshots.Snapshot]:
    done = []
    for year in years:
        compute(engine, year)
        done.append(publish(engine, year))
    return done


def test_verify_finds_nothing_wrong_in_an_intact_database(loaded: Engine) -> None:
    assert verify(loaded) == []
    publish_years(loaded, 2022, 2023, 2024)
    compute(loaded, 2023)
    publish(loaded, 2023, reason="更正")
    compute(loaded, 2024)  # a draft too
    assert verify(loaded) == []


ROW_CHANGES = [
    "score = score - 10",
    "grade = CASE WHEN grade = 'A' THEN 'B' ELSE 'A' END",
    "vetoed = NOT vetoed",
    "name = '改名'",
    "licence_no = '教民0号'",
    "points = '{}'",
    "vetoes = '[\"veto_major_accident\"]'",
    # The row's own parts of its explanation: a finding's note, its input digest.
    'explanation = replace(explanation, \'"note":"\', \'"note":"改\')',
    'explanation = replace(explanation, \'"input_digest":"sha256:\', \'"input_digest":"0\')',
]


def test_verify_names_a_published_snapshot_whose_row_was_altered(loaded: Engine) -> None:
    _, target, _ = publish_years(loaded, 2022, 2023, 2024)
    drop_guards(loaded)
    where = f"WHERE snapshot_id = {target.id} AND uscc = '52120111MJ0627485A'"
    with reading(loaded) as conn:
        original = snapshots.row_of(conn, target, "52120111MJ0627485A")
    named = f"snapshot 2023 revision 1 (id {target.id}): rows do not match its content hash"
    for change in ROW_CHANGES:
        sql(loaded, f"UPDATE snapshot_rows SET {change} {where}")
        assert verify(loaded) == [named], change
        with loaded.begin() as conn:  # put the row back: verify is satisfied again
            conn.execute(
                snapshot_rows.update()
                .where(snapshot_rows.c.snapshot_id == target.id)
                .where(snapshot_rows.c.uscc == original["uscc"])
                .values(**original)
            )
        assert verify(loaded) == [], change


def test_verify_names_a_snapshot_whose_shared_explanation_parts_were_altered(
    loaded: Engine,
) -> None:
    """What every explanation of a snapshot shares is stored once, under its content hash."""
    _, target, _ = publish_years(loaded, 2022, 2023, 2024)
    assert target.explanation_parts and "按照合同约定进行退费" in target.explanation_parts
    drop_guards(loaded)
    sql(
        loaded,
        "UPDATE snapshots SET explanation_parts = replace(explanation_parts, "
        f"'按照合同约定进行退费', '按约退费') WHERE id = {target.id}",
    )
    assert verify(loaded) == [
        f"snapshot 2023 revision 1 (id {target.id}): rows do not match its content hash"
    ]


def test_verify_notices_rows_rewritten_together_with_their_content_hash(loaded: Engine) -> None:
    """Rewriting a row and the snapshot's content hash to match still breaks the chain."""
    _, target, _ = publish_years(loaded, 2022, 2023, 2024)
    drop_guards(loaded)
    with reading(loaded) as conn:
        rows = snapshots.rows_of(conn, target)
    rows[0]["score"] -= 10
    forged = integrity.content_hash(snapshots.as_dict(target), rows)
    sql(
        loaded,
        f"UPDATE snapshot_rows SET score = score - 10 WHERE snapshot_id = {target.id} "
        f"AND uscc = '{rows[0]['uscc']}'",
    )
    sql(loaded, f"UPDATE snapshots SET content_hash = '{forged}' WHERE id = {target.id}")
    assert verify(loaded) == ["snapshot 2023 revision 1: chain hash does not match"]


def test_verify_names_a_published_snapshot_whose_reason_was_altered(loaded: Engine) -> None:
    publish_years(loaded, 2022, 2023)
    compute(loaded, 2023)
    correction = publish(loaded, 2023, reason="复议更正")
    publish_years(loaded, 2024)
    drop_guards(loaded)
    sql(loaded, f"UPDATE snapshots SET reason = '无' WHERE id = {correction.id}")
    assert verify(loaded) == ["snapshot 2023 revision 2: chain hash does not match"]


def test_deleting_a_published_snapshot_from_the_middle_of_the_chain_is_named(
    loaded: Engine,
) -> None:
    _, middle, _ = publish_years(loaded, 2022, 2023, 2024)
    drop_guards(loaded)
    sql(loaded, f"DELETE FROM deliveries WHERE snapshot_id = {middle.id}")  # its outbox too
    sql(loaded, f"DELETE FROM snapshot_rows WHERE snapshot_id = {middle.id}")
    sql(loaded, f"DELETE FROM snapshots WHERE id = {middle.id}")
    assert verify(loaded) == ["snapshot 2024 revision 1: hash chain is broken"]


def test_unpublishing_a_snapshot_is_named(loaded: Engine) -> None:
    _, middle, _ = publish_years(loaded, 2022, 2023, 2024)
    drop_guards(loaded)
    sql(
        loaded,
        "UPDATE snapshots SET status = 'draft', chain_seq = NULL, chain_hash = NULL, "
        f"prev_hash = NULL WHERE id = {middle.id}",
    )
    assert verify(loaded) == ["snapshot 2024 revision 1: hash chain is broken"]


def run_verify(database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CREDIT_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "verify"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_verify_command_exits_non_zero_naming_the_altered_snapshot(
    database_url: str, loaded: Engine
) -> None:
    _, target, _ = publish_years(loaded, 2022, 2023, 2024)
    # in-process for speed; the same command the subprocess below runs
    intact = CliRunner().invoke(commands.app, ["verify"], env={"CREDIT_DATABASE_URL": database_url})
    assert intact.exit_code == 0, intact.output
    assert "3 snapshot(s) verified" in intact.stdout

    drop_guards(loaded)
    sql(loaded, f"UPDATE snapshot_rows SET grade = 'A' WHERE snapshot_id = {target.id}")
    altered = run_verify(database_url)
    assert altered.returncode != 0
    assert "snapshot 2023 revision 1" in altered.stderr
    assert altered.stdout == ""


# Imports ------------------------------------------------------------------------------------


NEW_INSTITUTION = {
    "uscc": "52120111MJ0700001F",
    "name": "天津市西青区新星文化培训学校",
    "district_code": "120111",
    "licence_no": "教民11201117000017号",
    "address": "天津市西青区精武镇学府路1号",
    "status": "operating",
}


def finding(finding_id: str, **changes: str) -> dict[str, str]:
    row = {
        "finding_id": finding_id,
        "uscc": NEW_INSTITUTION["uscc"],
        "indicator": "refunds_per_contract",
        "occurred_on": "2023-06-01",
        "count": "2",
        "source": "complaint",
        "reference": "",
        "status": "active",
        "note": "未按合同约定退费",
    }
    return {**row, **changes}


def test_an_import_with_one_bad_row_stores_nothing_and_names_file_row_and_column(
    loaded: Engine, tmp_path: Path
) -> None:
    people = write_csv(tmp_path / "机构.csv", [NEW_INSTITUTION])
    bad = write_csv(
        tmp_path / "发现.csv",
        [finding("T-1"), finding("T-2", occurred_on="2023-02-30"), finding("T-3")],
    )
    with pytest.raises(InputError) as raised:
        import_files(loaded, [people, bad], rules=RULES, by="tests")

    [problem] = raised.value.problems
    assert (problem.file, problem.row, problem.column) == (str(bad), 3, "occurred_on")
    assert problem.value == "2023-02-30"
    assert count(loaded, institutions) == SAMPLE_INSTITUTIONS
    assert count(loaded, findings) == SAMPLE_FINDINGS


def counts(summary: storage.ImportSummary) -> storage.ImportSummary:
    """What an import stored, without its warnings (the sample's fictional codes have some)."""
    return storage.ImportSummary(
        *(getattr(summary, f) for f in storage.ImportSummary.__dataclass_fields__)
    )


def test_importing_the_same_files_again_changes_nothing(loaded: Engine) -> None:
    with reading(loaded) as conn:
        before = storage.get_finding(conn, "XQ-2023-0001")
    summary = import_files(loaded, SAMPLE_FILES, rules=RULES, by="someone else")
    assert counts(summary) == storage.ImportSummary(0, 0, 0, SAMPLE_FINDINGS)
    with reading(loaded) as conn:
        assert storage.get_finding(conn, "XQ-2023-0001") == before
    assert count(loaded, institutions) == SAMPLE_INSTITUTIONS


def test_importing_a_stored_finding_id_with_different_content_is_a_conflict(
    loaded: Engine, tmp_path: Path
) -> None:
    [original] = [r for r in sample_rows("findings.csv") if r["finding_id"] == "XQ-2023-0001"]
    changed = write_csv(
        tmp_path / "findings.csv",
        [{**original, "finding_id": "T-NEW"}, {**original, "count": "3"}],
    )
    with pytest.raises(Conflict, match="XQ-2023-0001"):
        import_files(loaded, [changed], rules=RULES, by="tests")
    with reading(loaded) as conn:
        assert storage.get_finding(conn, "XQ-2023-0001")["count"] == int(original["count"] or 1)
        with pytest.raises(NotFound):
            storage.get_finding(conn, "T-NEW")


def test_an_import_into_an_empty_database_stores_the_whole_sample(engine: Engine) -> None:
    summary = import_files(engine, SAMPLE_FILES, rules=RULES, by="tests")
    assert counts(summary) == storage.ImportSummary(SAMPLE_INSTITUTIONS, 0, SAMPLE_FINDINGS, 0)
    with reading(engine) as conn:
        name = storage.get_institution(conn, "52120111MJ0627485A")["name"]
    assert name == sample_rows("institutions.csv")[0]["name"]


# Concurrency --------------------------------------------------------------------------------


def all_at_once(threads: int, work: Callable[[int], Any]) -> list[Any]:
    """Run `work(i)` in `threads` threads released together; exceptions are returned."""
    barrier = threading.Barrier(threads)

    def attempt(i: int) -> Any:
        barrier.wait()
        try:
            return work(i)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(attempt, range(threads)))


def test_concurrent_publishes_of_a_year_give_exactly_one_published_snapshot(
    loaded: Engine,
) -> None:
    compute(loaded, 2023)
    outcomes = all_at_once(8, lambda i: publish(loaded, 2023, by=f"clerk {i}"))

    won = [o for o in outcomes if isinstance(o, snapshots.Snapshot)]
    lost = [o for o in outcomes if not isinstance(o, snapshots.Snapshot)]
    assert len(won) == 1
    assert all(isinstance(o, Conflict) for o in lost), lost
    with reading(loaded) as conn:
        assert [s.status for s in snapshots.revisions(conn, year=2023)] == ["published"]
    assert verify(loaded) == []


def test_concurrent_corrections_of_a_year_give_exactly_one_successor(loaded: Engine) -> None:
    compute(loaded, 2023)
    publish(loaded, 2023)
    compute(loaded, 2023)
    outcomes = all_at_once(
        8, lambda i: publish(loaded, 2023, revision=2, reason=f"更正 {i}", by=f"clerk {i}")
    )
    assert sum(isinstance(o, snapshots.Snapshot) for o in outcomes) == 1
    assert all(isinstance(o, snapshots.Snapshot | Conflict) for o in outcomes)
    assert verify(loaded) == []


def test_concurrent_computes_and_publishes_never_fail_with_a_database_error(
    loaded: Engine,
) -> None:
    """Writers queue for the lock (SQLite never says "database is locked"); readers go on."""

    def work(i: int) -> int:
        year = 2022 + i % 3
        published = 0
        for round_ in range(2):
            compute(loaded, year, by=f"clerk {i}")
            with reading(loaded) as conn:
                snapshots.revisions(conn, year=year)
            try:
                publish(loaded, year, reason=f"round {round_} by {i}", by=f"clerk {i}")
                published += 1
            except Conflict:
                pass
        return published

    outcomes = all_at_once(8, work)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert errors == []
    with reading(loaded) as conn:
        every = snapshots.every(conn)
    assert len(every) == 8 * 2
    assert sum(s.status == "published" for s in every) == sum(outcomes) >= 3
    for year in (2022, 2023, 2024):
        revisions = sorted(s.revision for s in every if s.year == year)
        assert revisions == list(range(1, len(revisions) + 1))
    assert verify(loaded) == []


def count_keys(conn: Connection) -> int:
    return int(conn.scalar(select(func.count()).select_from(api_keys)) or 0)


def test_sqlite_uses_wal_full_sync_a_busy_timeout_and_takes_the_write_lock_up_front(
    tmp_path: Path,
) -> None:
    path = tmp_path / "pragmas.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
        with reading(engine) as conn:
            pragmas = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
        assert pragmas == {
            "journal_mode": "wal",
            "synchronous": 2,  # FULL
            "busy_timeout": 30_000,
            "foreign_keys": 1,
        }
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            # a writer holds the lock before its first statement
            with writing(engine), pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            other.execute("BEGIN IMMEDIATE")  # free again once the writer commits
            other.execute("ROLLBACK")
            with reading(engine) as reader:  # a reader never blocks a writer under WAL
                assert count_keys(reader) == 0
                with writing(engine) as writer:
                    keys.create(writer, role=keys.Role.ANALYST, name="while reading")
                assert count_keys(reader) == 0  # and keeps its snapshot
            with reading(engine) as conn:
                assert count_keys(conn) == 1
        finally:
            other.close()
    finally:
        engine.dispose()


# PostgreSQL: privileges as well as triggers --------------------------------------------------


@pytest.fixture
def postgres_loaded(postgres_admin: str) -> Iterator[Engine]:
    engine = make_engine(create_database(postgres_admin))
    upgrade(engine)
    import_files(engine, SAMPLE_FILES, rules=RULES, by="tests")
    yield engine
    engine.dispose()


@pytest.fixture
def app_role(postgres_loaded: Engine) -> Iterator[str]:
    """A login role that is a member of credit_app, as the service should connect."""
    role = "app_" + uuid.uuid4().hex[:10]
    sql(postgres_loaded, f'CREATE ROLE "{role}" LOGIN IN ROLE credit_app')
    yield role
    postgres_loaded.dispose()
    sql(postgres_loaded, f'DROP ROLE "{role}"')


def as_role(engine: Engine, role: str, statement: str) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(f'SET LOCAL ROLE "{role}"')
        conn.exec_driver_sql(statement)


def test_postgresql_refuses_truncating_snapshots_and_findings(postgres_loaded: Engine) -> None:
    compute(postgres_loaded, 2023)
    publish(postgres_loaded, 2023)
    refused(postgres_loaded, "TRUNCATE snapshot_rows", IMMUTABLE)
    refused(postgres_loaded, "TRUNCATE snapshots CASCADE", IMMUTABLE)
    refused(postgres_loaded, "TRUNCATE findings CASCADE", "never deleted")
    assert count(postgres_loaded, snapshot_rows) == SAMPLE_INSTITUTIONS
    assert count(postgres_loaded, findings) == SAMPLE_FINDINGS


def test_a_member_of_credit_app_may_rate_and_publish_but_never_delete(
    postgres_loaded: Engine, app_role: str
) -> None:
    draft = compute(postgres_loaded, 2023)
    with writing(postgres_loaded) as conn:  # the service's own work needs no more rights
        conn.exec_driver_sql(f'SET LOCAL ROLE "{app_role}"')
        publishing.publish(conn, year=2023, revision=None, reason=None, by="app")
        again = publishing.compute_draft(conn, rules=RULES, year=2023, scale="four", by="app")
        storage.revoke(conn, finding_id="XQ-2023-0001", by="app", reason="异议成立", at=now())

    drop_guards(postgres_loaded)  # privileges hold even without the triggers
    for statement in (
        "DELETE FROM snapshots",
        f"DELETE FROM snapshots WHERE id = {again.id}",
        "DELETE FROM snapshot_rows",
        f"UPDATE snapshot_rows SET grade = 'A' WHERE snapshot_id = {draft.id}",
        "DELETE FROM findings",
        "TRUNCATE snapshots, snapshot_rows",
        "TRUNCATE findings",
    ):
        with pytest.raises(ProgrammingError, match="permission denied"):
            as_role(postgres_loaded, app_role, statement)
    assert count(postgres_loaded, snapshot_table) == 2
    assert count(postgres_loaded, snapshot_rows) == 2 * SAMPLE_INSTITUTIONS
    assert count(postgres_loaded, findings) == SAMPLE_FINDINGS
    assert verify(postgres_loaded) == []
