"""Tamper evidence beyond the hashes: signatures, the anchor file, and the guards' watch.

Each attack is first played out as an intruder with the database owner's rights would, using
the project's own hash functions, and shown to pass the hashes alone; then the signature, the
anchor file or /ready must name it. On SQLite and PostgreSQL (the `database_url` fixture).
"""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from scoring.shipped import load_rules
from service.api.app import create_app
from service.cli import commands
from service.core.database import reading, writing
from service.core.errors import Conflict, NotConfigured
from service.core.migrate import missing_guards, upgrade
from service.core.settings import Settings
from service.core.tables import snapshot_rows
from service.core.tables import snapshots as snapshot_table
from service.ratings import integrity, publishing, snapshots
from tests.conftest import drop_guards

RULES = load_rules()
IMMUTABLE = "published snapshots are immutable"


# Helpers ---------------------------------------------------------------------------------------


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "signing.pem"
    path.parent.mkdir()
    integrity.create_signing_key(path)
    return path


@pytest.fixture
def anchor(tmp_path: Path) -> Path:
    """Where each publication's chain head is recorded: outside the database."""
    (tmp_path / "anchor").mkdir()
    return tmp_path / "anchor" / "chain-heads.jsonl"


def public(key_file: Path) -> Ed25519PublicKey:
    return integrity.load_signing_key(key_file).public_key()


def publish_years(
    engine: Engine, *years: int, key: Path | None = None, anchor: Path | None = None
) -> list[snapshots.Snapshot]:
    done = []
    for year in years:
        with writing(engine) as conn:
            publishing.compute_draft(conn, rules=RULES, year=year, scale="four", by="tests")
        with writing(engine) as conn:
            done.append(
                publishing.publish(
                    conn,
                    year=year,
                    revision=None,
                    reason=None,
                    by="tests",
                    signing_key=key,
                    anchor_file=anchor,
                )
            )
    return done


def verify(engine: Engine, *keys: Ed25519PublicKey, anchor: Path | None = None) -> list[str]:
    with reading(engine) as conn:
        return integrity.verify(conn, public_keys=keys, anchor_file=anchor)


def sql(engine: Engine, statement: str) -> None:
    """One raw statement in a transaction of its own, as someone at a database prompt."""
    with engine.begin() as conn:
        conn.exec_driver_sql(statement)


def rechain_from(engine: Engine, seq: int) -> None:
    """Recompute every chain hash from position `seq` on with the project's own function, so
    that the hashes all match again (what an intruder does after an edit)."""
    with engine.begin() as conn:
        chained = [s for s in snapshots.every(conn) if s.chain_seq is not None]
        chained.sort(key=lambda s: s.chain_seq or 0)
        prev = integrity.GENESIS
        for s in chained:
            if (s.chain_seq or 0) >= seq:
                new = integrity.chain_hash(snapshots.as_dict(s), prev)
                conn.execute(
                    snapshot_table.update()
                    .where(snapshot_table.c.id == s.id)
                    .values(prev_hash=prev, chain_hash=new)
                )
                prev = new
            else:
                prev = s.chain_hash or ""


def forge_grade(engine: Engine, target: snapshots.Snapshot) -> str:
    """Issue 9's attack: one institution's 890/D becomes 1000/A, and every hash is recomputed
    with the project's functions. Returns the institution's uscc."""
    with reading(engine) as conn:
        rows = snapshots.rows_of(conn, target)
    row = min(rows, key=lambda r: r["score"])  # the lowest grade of the year
    assert row["grade"] != "A"
    row.update(score=1000, grade="A")
    with engine.begin() as conn:
        conn.execute(
            snapshot_rows.update()
            .where(snapshot_rows.c.snapshot_id == target.id, snapshot_rows.c.uscc == row["uscc"])
            .values(score=1000, grade="A")
        )
        conn.execute(
            snapshot_table.update()
            .where(snapshot_table.c.id == target.id)
            .values(content_hash=integrity.content_hash(snapshots.as_dict(target), rows))
        )
    rechain_from(engine, target.chain_seq or 0)
    uscc: str = row["uscc"]
    return uscc


def delete_snapshot(engine: Engine, snapshot: snapshots.Snapshot) -> None:
    sql(engine, f"DELETE FROM deliveries WHERE snapshot_id = {snapshot.id}")  # its outbox too
    sql(engine, f"DELETE FROM snapshot_rows WHERE snapshot_id = {snapshot.id}")
    sql(engine, f"DELETE FROM snapshots WHERE id = {snapshot.id}")


# Issue 9: a rewritten snapshot with every hash recomputed ------------------------------------


def test_a_rewritten_grade_with_every_hash_recomputed_is_named_by_its_signature(
    loaded: Engine, key_file: Path
) -> None:
    _, target, _ = publish_years(loaded, 2022, 2023, 2024, key=key_file)
    assert verify(loaded, public(key_file)) == []
    drop_guards(loaded)
    uscc = forge_grade(loaded, target)
    with reading(loaded) as conn:
        assert snapshots.row_of(conn, target, uscc)["grade"] == "A"

    assert verify(loaded) == []  # the attack: the hashes alone all match again
    assert verify(loaded, public(key_file)) == [
        "snapshot 2023 revision 1: signature does not match",
        "snapshot 2024 revision 1: signature does not match",  # its prev_hash was rewritten
    ]


def test_a_rewritten_grade_re_signed_with_another_key_is_named(
    loaded: Engine, key_file: Path
) -> None:
    _, target = publish_years(loaded, 2022, 2023, key=key_file)
    drop_guards(loaded)
    forge_grade(loaded, target)
    intruder = Ed25519PrivateKey.generate()
    with loaded.begin() as conn:
        forged = snapshots.get(conn, 2023, 1)
        conn.execute(
            snapshot_table.update()
            .where(snapshot_table.c.id == forged.id)
            .values(
                signature=integrity.sign(intruder, forged.chain_hash or ""),
                key_fingerprint=integrity.fingerprint(intruder.public_key()),
            )
        )
    [problem] = verify(loaded, public(key_file))
    assert problem.startswith("snapshot 2023 revision 1: signed with key sha256:")
    assert "which is not a key verify was given" in problem


def test_stripping_the_signatures_after_a_rewrite_is_named(
    loaded: Engine, key_file: Path, anchor: Path
) -> None:
    """Unsigned after signed fails; a whole chain rewritten unsigned fails on the anchor."""
    first, target, _ = publish_years(loaded, 2022, 2023, 2024, key=key_file, anchor=anchor)
    drop_guards(loaded)
    forge_grade(loaded, target)
    strip = "UPDATE snapshots SET signature = NULL, key_fingerprint = NULL"
    sql(loaded, f"{strip} WHERE id > {first.id}")
    assert verify(loaded, public(key_file)) == [
        "snapshot 2023 revision 1: unsigned, but published after signing began "
        "(snapshot 2022 revision 1)",
        "snapshot 2024 revision 1: unsigned, but published after signing began "
        "(snapshot 2022 revision 1)",
    ]
    sql(loaded, strip)
    assert verify(loaded, public(key_file)) == []  # all "legacy" now: only the anchor knows
    assert verify(loaded, public(key_file), anchor=anchor) == [
        "snapshot 2022 revision 1: signature differs from the one recorded in the anchor file",
        "snapshot 2023 revision 1: chain hash differs from the one recorded in the anchor file",
        "snapshot 2024 revision 1: chain hash differs from the one recorded in the anchor file",
    ]


def test_the_anchor_alone_names_a_rewrite_of_unsigned_snapshots(
    loaded: Engine, anchor: Path
) -> None:
    _, target, _ = publish_years(loaded, 2022, 2023, 2024, anchor=anchor)
    assert verify(loaded, anchor=anchor) == []
    drop_guards(loaded)
    forge_grade(loaded, target)
    assert verify(loaded) == []
    assert verify(loaded, anchor=anchor) == [
        "snapshot 2023 revision 1: chain hash differs from the one recorded in the anchor file",
        "snapshot 2024 revision 1: chain hash differs from the one recorded in the anchor file",
    ]


# Issue 9: the latest published snapshot deleted ----------------------------------------------


def test_deleting_the_latest_published_snapshot_is_named_by_the_anchor(
    loaded: Engine, key_file: Path, anchor: Path
) -> None:
    _, latest = publish_years(loaded, 2022, 2023, key=key_file, anchor=anchor)
    drop_guards(loaded)
    delete_snapshot(loaded, latest)

    assert verify(loaded, public(key_file)) == []  # the attack: what is left is a whole chain
    [problem] = verify(loaded, public(key_file), anchor=anchor)
    assert problem.startswith(
        f"snapshot 2023 revision 1 (publication 2, chain hash {latest.chain_hash}): recorded in "
        "the anchor file but not in the database"
    )


def test_unpublishing_the_latest_snapshot_is_named_by_the_anchor(
    loaded: Engine, anchor: Path
) -> None:
    _, latest = publish_years(loaded, 2022, 2023, anchor=anchor)
    drop_guards(loaded)
    sql(
        loaded,
        "UPDATE snapshots SET status = 'draft', chain_seq = NULL, chain_hash = NULL, "
        f"prev_hash = NULL, published_at = NULL, published_by = NULL WHERE id = {latest.id}",
    )
    assert verify(loaded) == []
    [problem] = verify(loaded, anchor=anchor)
    assert problem.startswith("snapshot 2023 revision 1 (publication 2, chain hash ")


def test_a_publication_missing_from_the_anchor_is_named(loaded: Engine, anchor: Path) -> None:
    """Published by a process without the anchor file (or forged): named as unanchored."""
    publish_years(loaded, 2022, anchor=anchor)
    publish_years(loaded, 2023)
    assert verify(loaded, anchor=anchor) == [
        "snapshot 2023 revision 1: published after the last publication in the anchor file (1)"
    ]


def test_the_anchor_records_each_publication_and_a_later_line_for_a_position_wins(
    loaded: Engine, key_file: Path, anchor: Path
) -> None:
    first, second = publish_years(loaded, 2022, 2023, key=key_file, anchor=anchor)
    lines = [json.loads(line) for line in anchor.read_text(encoding="utf-8").splitlines()]
    assert lines == [integrity.anchor_entry(first), integrity.anchor_entry(second)]
    assert lines[1]["seq"] == 2 and lines[1]["signature"] == second.signature
    # A publish whose transaction failed after its line was written leaves a stale line; the
    # next publication takes the same position and its line settles it.
    stale = {**lines[1], "seq": 3, "chain_hash": "sha256:" + "e" * 64, "year": 2024}
    with anchor.open("a", encoding="utf-8") as f:
        f.write(json.dumps(stale) + "\n")
    [problem] = verify(loaded, public(key_file), anchor=anchor)
    assert "(publication 3, chain hash sha256:eeee" in problem
    publish_years(loaded, 2024, key=key_file, anchor=anchor)
    assert verify(loaded, public(key_file), anchor=anchor) == []


def test_an_anchor_file_that_cannot_be_written_publishes_nothing(
    loaded: Engine, tmp_path: Path
) -> None:
    with writing(loaded) as conn:
        draft = publishing.compute_draft(conn, rules=RULES, year=2023, scale="four", by="t")
    nowhere = tmp_path / "no such folder" / "anchor.jsonl"
    with pytest.raises(NotConfigured, match="anchor file"), writing(loaded) as conn:
        publishing.publish(conn, year=2023, revision=None, reason=None, by="t", anchor_file=nowhere)
    with reading(loaded) as conn:
        assert snapshots.get(conn, 2023, draft.revision).status == "draft"


# Issue 9 (mutant): a snapshot's header columns -----------------------------------------------

HEADER_CHANGES = {
    "input_digest": "sha256:" + "1" * 64,
    "rules_hash": "sha256:" + "2" * 64,
    "scale": "five",
    "ruleset_version": "tampered",
}


@pytest.mark.parametrize("column", sorted(HEADER_CHANGES))
def test_verify_names_a_snapshot_whose_header_was_altered(loaded: Engine, column: str) -> None:
    """Each header column is in the content hash (dropping one from it must fail here)."""
    with writing(loaded) as conn:
        draft = publishing.compute_draft(conn, rules=RULES, year=2022, scale="four", by="t")
    published = publish_years(loaded, 2023)[0]
    value = HEADER_CHANGES[column]
    sql(loaded, f"UPDATE snapshots SET {column} = '{value}' WHERE id = {draft.id}")  # a draft
    assert verify(loaded) == [
        f"snapshot 2022 revision 1 (id {draft.id}): rows do not match its content hash"
    ]
    with pytest.raises(DBAPIError, match=IMMUTABLE):
        sql(loaded, f"UPDATE snapshots SET {column} = '{value}' WHERE id = {published.id}")
    drop_guards(loaded)
    sql(loaded, f"UPDATE snapshots SET {column} = '{value}' WHERE id = {published.id}")
    assert verify(loaded) == [
        f"snapshot 2022 revision 1 (id {draft.id}): rows do not match its content hash",
        f"snapshot 2023 revision 1 (id {published.id}): rows do not match its content hash",
    ]


# Signing: keys, legacy snapshots, the public key ---------------------------------------------


def test_the_signing_key_is_created_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "signing.pem"
    made = CliRunner().invoke(commands.app, ["keys", "signing", "--path", str(path)], env={})
    assert made.exit_code == 0, made.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = integrity.load_signing_key(path).public_key()
    assert f"fingerprint: {integrity.fingerprint(key)}" in made.stdout
    assert integrity.public_pem(key) in made.stdout
    before = path.read_bytes()

    again = CliRunner().invoke(
        commands.app, ["keys", "signing"], env={"CREDIT_SIGNING_KEY": str(path)}
    )
    assert again.exit_code == 1 and "never overwritten" in again.stderr
    assert path.read_bytes() == before
    nowhere = CliRunner().invoke(commands.app, ["keys", "signing"], env={})
    assert nowhere.exit_code == 1 and "CREDIT_SIGNING_KEY" in nowhere.stderr
    with pytest.raises(Conflict):
        integrity.create_signing_key(path)


def test_a_key_that_is_not_an_ed25519_private_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "not-a-key.pem"
    path.write_text("hello", encoding="utf-8")
    with pytest.raises(NotConfigured, match="not an unencrypted PEM private key"):
        integrity.load_signing_key(path)
    with pytest.raises(NotConfigured, match="cannot read"):
        integrity.load_signing_key(tmp_path / "missing.pem")


def test_unsigned_legacy_snapshots_verify_and_once_signed_a_key_is_required(
    loaded: Engine, key_file: Path
) -> None:
    legacy = publish_years(loaded, 2022)[0]  # before signing existed: no key
    assert legacy.signature is None and legacy.key_fingerprint is None
    signed = publish_years(loaded, 2023, key=key_file)[0]
    assert signed.key_fingerprint == integrity.fingerprint(public(key_file))
    assert integrity.signature_holds(
        public(key_file), signed.signature or "", signed.chain_hash or ""
    )

    with reading(loaded) as conn:
        found = integrity.check(conn, public_keys=[public(key_file)])
    assert found.problems == [] and found.signed == 1
    assert any("1 published snapshot(s) unsigned" in note for note in found.notes)
    with reading(loaded) as conn:
        unchecked = integrity.check(conn)
    assert unchecked.problems == []
    assert any("1 signature(s) not checked" in note for note in unchecked.notes)

    with writing(loaded) as conn:
        publishing.compute_draft(conn, rules=RULES, year=2024, scale="four", by="t")
    with pytest.raises(NotConfigured, match="CREDIT_SIGNING_KEY"), writing(loaded) as conn:
        publishing.publish(conn, year=2024, revision=None, reason=None, by="t")


def test_verify_command_checks_signatures_and_the_anchor(
    database_url: str, loaded: Engine, key_file: Path, anchor: Path
) -> None:
    env: dict[str, str | None] = {
        "CREDIT_DATABASE_URL": database_url,
        "CREDIT_SIGNING_KEY": str(key_file),
        "CREDIT_ANCHOR_FILE": str(anchor),
    }
    publish_years(loaded, 2022, 2023, key=key_file, anchor=anchor)
    intact = CliRunner().invoke(commands.app, ["verify"], env=env)
    assert intact.exit_code == 0, intact.output
    assert "2 snapshot(s) verified" in intact.stdout and "2 signature(s) checked" in intact.stdout

    other = Ed25519PrivateKey.generate()  # verify without the signing key, given another one
    other_pem = key_file.parent / "other.pub"
    other_pem.write_text(integrity.public_pem(other.public_key()), encoding="utf-8")
    wrong = CliRunner().invoke(
        commands.app,
        ["verify", "--public-key", str(other_pem)],
        env={**env, "CREDIT_SIGNING_KEY": None},
    )
    assert wrong.exit_code == 1 and "which is not a key verify was given" in wrong.stderr

    drop_guards(loaded)
    with reading(loaded) as conn:
        latest = snapshots.get(conn, 2023, 1)
    delete_snapshot(loaded, latest)
    deleted = CliRunner().invoke(commands.app, ["verify"], env=env)
    assert deleted.exit_code == 1 and deleted.stdout == ""
    assert "snapshot 2023 revision 1 (publication 2" in deleted.stderr


def test_the_public_key_is_published_and_checks_a_public_snapshot(
    database_url: str, loaded: Engine, key_file: Path
) -> None:
    publish_years(loaded, 2023, key=key_file)
    app = create_app(Settings(database_url=database_url, signing_key=key_file))
    with TestClient(app) as client:
        published = client.get("/v1/signing-key")
        rating = client.get("/v1/ratings/2023")
    assert published.status_code == 200, published.text
    body = published.json()
    public_key = load_pem_public_key(body["public_key"].encode())
    assert isinstance(public_key, Ed25519PublicKey)
    snapshot = rating.json()["snapshot"]
    assert snapshot["key_fingerprint"] == body["fingerprint"]
    message = (integrity.SIGNED_PREFIX + snapshot["chain_hash"]).encode()
    public_key.verify(base64.b64decode(snapshot["signature"]), message)  # raises if not

    unsigned = create_app(Settings(database_url=database_url))
    with TestClient(unsigned) as client:
        assert client.get("/v1/signing-key").status_code == 404


# Guards: /ready notices a dropped one, upgrade puts it back ----------------------------------


@pytest.fixture
def client(database_url: str, loaded: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        yield client


def guard_names(engine: Engine) -> list[str]:
    """A trigger an intruder drops, on each database."""
    return ["snapshots_no_update"] if engine.dialect.name == "sqlite" else ["snapshots_immutable"]


def test_a_dropped_guard_fails_ready_and_upgrade_restores_it(
    loaded: Engine, client: TestClient
) -> None:
    published = publish_years(loaded, 2023)[0]
    assert client.get("/ready").status_code == 200
    [name] = guard_names(loaded)
    table = "" if loaded.dialect.name == "sqlite" else " ON snapshots"
    sql(loaded, f"DROP TRIGGER {name}{table}")
    sql(loaded, f"UPDATE snapshots SET reason = 'edited' WHERE id = {published.id}")  # the hole

    answer = client.get("/ready")
    assert answer.status_code == 503
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["title"] == "Database guards missing"
    assert name in answer.json()["detail"]

    upgrade(loaded)
    with reading(loaded) as conn:
        assert missing_guards(conn) == []
    assert client.get("/ready").status_code == 200
    with pytest.raises(DBAPIError, match=IMMUTABLE):
        sql(loaded, f"UPDATE snapshots SET reason = 'again' WHERE id = {published.id}")
    assert verify(loaded) == ["snapshot 2023 revision 1: chain hash does not match"]


def test_ready_fails_when_the_signing_key_or_the_anchor_file_cannot_be_used(
    database_url: str, tmp_path: Path, key_file: Path, anchor: Path
) -> None:
    usable = Settings(database_url=database_url, signing_key=key_file, anchor_file=anchor)
    with TestClient(create_app(usable)) as client:
        assert client.get("/ready").status_code == 200
    for settings, title in [
        (usable.model_copy(update={"signing_key": tmp_path / "gone.pem"}), "Signing key unusable"),
        (
            usable.model_copy(update={"anchor_file": tmp_path / "no folder" / "a.jsonl"}),
            "Anchor file not writable",
        ),
    ]:
        with TestClient(create_app(settings)) as client:
            answer = client.get("/ready")
            key = client.get("/v1/signing-key")
        assert (answer.status_code, answer.json()["title"]) == (503, title)
        assert str(tmp_path) not in answer.text  # anyone may ask: no server path in the answer
        assert str(tmp_path) not in key.text


def test_every_guard_dropped_is_named_and_restored(loaded: Engine) -> None:
    drop_guards(loaded)
    with reading(loaded) as conn:
        missing = missing_guards(conn)
    expected = (
        {
            "snapshots_no_update",
            "snapshots_no_delete",
            "rows_no_insert",
            "rows_no_update",
            "rows_no_delete",
            "findings_no_delete",
            "findings_revoked_final",
            # migrations 0004 (the inspection register) and 0005 (draws, objections)
            "inspections_no_update",
            "inspections_no_delete",
            "draws_no_update",
            "draws_no_delete",
            "objections_no_delete",
            "objections_resolved_final",
        }
        if loaded.dialect.name == "sqlite"
        else {
            "refuse()",
            "refuse_if_parent_published()",
            "snapshots_immutable",
            "rows_immutable",
            "findings_no_delete",
            "findings_revoked_final",
            "snapshots_no_truncate",
            "snapshot_rows_no_truncate",
            "findings_no_truncate",
            "inspections_final",
            "inspections_no_truncate",
            "draws_write_once",
            "draws_no_truncate",
            "objections_no_delete",
            "objections_resolved_final",
            "objections_no_truncate",
        }
    )
    assert set(missing) == expected
    upgrade(loaded)
    with reading(loaded) as conn:
        assert missing_guards(conn) == []
    with pytest.raises(DBAPIError, match="never deleted"):
        sql(loaded, "DELETE FROM findings")


def test_a_guard_disabled_or_defused_is_named_and_restored(loaded: Engine) -> None:
    if loaded.dialect.name == "sqlite":  # same name, but it never fires
        sql(loaded, "DROP TRIGGER findings_no_delete")
        sql(
            loaded,
            "CREATE TRIGGER findings_no_delete BEFORE DELETE ON findings WHEN 0 "
            "BEGIN SELECT RAISE(ABORT, 'x'); END",
        )
        expected = ["findings_no_delete"]
    else:
        sql(loaded, "ALTER TABLE findings DISABLE TRIGGER findings_no_delete")
        sql(
            loaded,
            "CREATE OR REPLACE FUNCTION refuse_if_parent_published() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        )
        expected = ["refuse_if_parent_published()", "findings_no_delete"]
    with reading(loaded) as conn:
        assert missing_guards(conn) == expected
    upgrade(loaded)
    with reading(loaded) as conn:
        assert missing_guards(conn) == []
    with pytest.raises(DBAPIError, match="never deleted"):
        sql(loaded, "DELETE FROM findings")


def test_migration_0003_keeps_unsigned_snapshots_verifiable_both_ways(
    loaded: Engine, key_file: Path
) -> None:
    """Down to 0002 (no signature columns) and up again: the guards are back, and snapshots
    published unsigned then signed verify. (Below 0007 a snapshot stored in parts has nowhere
    to go, so the round trip is made before the first publication.)"""
    from alembic import command

    from service.core.migrate import _config

    config = _config()
    with loaded.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0002")
    upgrade(loaded)
    with reading(loaded) as conn:
        assert missing_guards(conn) == []
    publish_years(loaded, 2022)
    publish_years(loaded, 2023, key=key_file)
    assert verify(loaded, public(key_file)) == []


def test_migration_0007_is_not_undone_over_snapshots_stored_in_parts(loaded: Engine) -> None:
    """Undoing 0007 would drop what every explanation of a snapshot shares: refused, and
    nothing changes."""
    from alembic import command

    from service.core.migrate import _config

    publish_years(loaded, 2022)
    config = _config()
    refused = r"1 snapshot\(s\) store their explanations in parts"
    with pytest.raises(RuntimeError, match=refused), loaded.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0006")
    assert verify(loaded) == []
