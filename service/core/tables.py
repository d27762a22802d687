"""The database schema, as SQLAlchemy Core tables (the migrations in `service/migrations`
create them; this module is what queries are written against).

The database is the system of record: institutions, findings (never hard-deleted; a revocation
records who, when and why), snapshots of each computed year with one row per institution, and
hashed API keys. Published snapshots are protected by triggers installed by the migrations.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator

from scoring.inputs import FindingStatus, InstitutionStatus


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


metadata = MetaData()

institutions = Table(
    "institutions",
    metadata,
    Column("uscc", String(18), primary_key=True),
    Column("name", Text, nullable=False),
    Column("district_code", String(6), nullable=False),
    Column("licence_no", Text, nullable=False),
    Column("address", Text, nullable=False, server_default=""),
    Column("status", String(16), nullable=False, server_default=InstitutionStatus.operating.value),
    Column("recorded_at", UTCDateTime(), nullable=False),
    Column("recorded_by", Text, nullable=False),
)

findings = Table(
    "findings",
    metadata,
    Column("finding_id", String(64), primary_key=True),
    Column("uscc", String(18), ForeignKey("institutions.uscc"), nullable=False, index=True),
    Column("indicator", String(64), nullable=False),
    Column("occurred_on", Date, nullable=False, index=True),
    Column("count", Integer, nullable=False),
    Column("source", String(16), nullable=False),
    Column("reference", Text, nullable=False, server_default=""),
    Column("status", String(16), nullable=False, server_default=FindingStatus.active.value),
    Column("note", Text, nullable=False, server_default=""),
    Column("recorded_at", UTCDateTime(), nullable=False),
    Column("recorded_by", Text, nullable=False),
    Column("revoked_at", UTCDateTime()),
    Column("revoked_by", Text),
    Column("revoke_reason", Text),
)

# The inspection register (scoring.inspections): one row per institution per task, never
# edited or deleted (migration 0004's triggers); a changed row on import is a Conflict.
inspections = Table(
    "inspections",
    metadata,
    Column("task_id", String(64), primary_key=True),
    Column("uscc", String(18), ForeignKey("institutions.uscc"), primary_key=True),
    Column("inspected_on", Date, nullable=False, index=True),
    Column("result", String(16), nullable=False),
    Column("note", Text, nullable=False, server_default=""),
    Column("recorded_at", UTCDateTime(), nullable=False),
    Column("recorded_by", Text, nullable=False),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("year", Integer, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # draft | published
    Column("scale", String(16), nullable=False),
    Column("ruleset_version", Text, nullable=False),
    Column("rules_hash", Text, nullable=False),
    Column("input_digest", Text, nullable=False),
    Column("content_hash", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", Text, nullable=False),
    Column("supersedes", Integer),  # the revision this one corrects
    Column("reason", Text),
    Column("published_at", UTCDateTime()),
    Column("published_by", Text),
    Column("chain_seq", Integer, unique=True),
    Column("prev_hash", Text),
    Column("chain_hash", Text),
    # Ed25519 signature of the chain hash (base64) and the signing key's fingerprint: set at
    # publication when a signing key is configured (service.ratings.integrity); NULL before.
    Column("signature", Text),
    Column("key_fingerprint", Text),
    # JSON list of the closed institutions listed as not rated (scoring.standing); NULL when
    # none (and on every snapshot stored before migration 0006).
    Column("not_rated", Text),
    # JSON of what every explanation of the snapshot shares (scoring.explain_parts): its rows'
    # `explanation` then hold each institution's own parts. NULL on snapshots stored before
    # migration 0007, whose rows hold each explanation whole.
    Column("explanation_parts", Text),
    UniqueConstraint("year", "revision"),
    # One first publication per year, and one correction per published revision: concurrent
    # publishes of a year cannot both succeed, whatever the application does.
    Index(
        "one_successor_per_revision",
        "year",
        text("coalesce(supersedes, 0)"),
        unique=True,
        sqlite_where=text("status = 'published'"),
        postgresql_where=text("status = 'published'"),
    ),
)

snapshot_rows = Table(
    "snapshot_rows",
    metadata,
    Column("snapshot_id", Integer, ForeignKey("snapshots.id"), primary_key=True),
    Column("uscc", String(18), primary_key=True),
    Column("name", Text, nullable=False),
    Column("licence_no", Text, nullable=False),
    Column("score", Integer, nullable=False),
    Column("grade", String(1), nullable=False),
    Column("vetoed", Boolean, nullable=False),
    Column("vetoes", Text, nullable=False),  # JSON list of codes
    Column("points", Text, nullable=False),  # JSON {code: points kept}
    Column("explanation", Text, nullable=False),  # JSON, scoring.explain.Explanation
    Column("status", String(16)),  # "suspended" marks the row; NULL: operating
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    Column("role", String(16), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime()),
)

# The sharing outbox: publishing a snapshot queues its batches here in the same transaction,
# so a published year can never miss its delivery, and the exact bytes sent are fixed once.
deliveries = Table(
    "deliveries",
    metadata,
    Column("batch_id", String(64), primary_key=True),  # also the Idempotency-Key
    Column("snapshot_id", Integer, ForeignKey("snapshots.id"), nullable=False),
    Column("year", Integer, nullable=False, index=True),
    Column("revision", Integer, nullable=False),
    Column("batch_no", Integer, nullable=False),
    Column("batch_count", Integer, nullable=False),
    Column("records", Integer, nullable=False),
    Column("body", Text, nullable=False),  # the exact JSON sent on every attempt
    Column("state", String(16), nullable=False),  # pending | delivered | dead
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UTCDateTime()),
    Column("last_error", Text),
    Column("receipt_id", Text),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("delivered_at", UTCDateTime()),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch_id", String(64), ForeignKey("deliveries.batch_id"), nullable=False, index=True),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
    # sending (in flight, or interrupted by a crash) | delivered | duplicate | rejected | retry
    Column("outcome", String(16), nullable=False),
    Column("http_status", Integer),
    Column("detail", Text),
)

# The random-inspection draws (双随机, service.ratings.draws): write-once, published whole, so
# that anyone can rerun one from its record (docs/draws.md). Guarded against UPDATE and DELETE.
draws = Table(
    "draws",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("year", Integer, nullable=False, index=True),  # the grades' year
    Column("revision", Integer, nullable=False),  # the published revision drawn from
    Column("snapshot_hash", Text, nullable=False),  # its content hash
    Column("scale", String(16), nullable=False),
    Column("procedure", Text, nullable=False),  # scoring.draw.PROCEDURE
    Column("count", Integer, nullable=False),
    Column("seed", Text, nullable=False),
    Column("seed_source", String(16), nullable=False),  # given | secrets
    Column("weights", Text, nullable=False),  # JSON {grade: "0.5" | "all"}
    Column("population", Text, nullable=False),  # JSON [[uscc, grade], …]: who could be drawn
    Column("excluded", Text, nullable=False),  # JSON [uscc, …]: closed, never drawn
    Column("quotas", Text, nullable=False),  # JSON {grade: drawn}
    Column("drawn", Text, nullable=False),  # JSON [{uscc, grade, key}, …]
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", Text, nullable=False),
)

# Objections filed in a publication's publicity period (公示期, service.ratings.objections):
# never deleted; once resolved (upheld or rejected), final. Guarded like findings.
objections = Table(
    "objections",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("year", Integer, nullable=False, index=True),
    Column("revision", Integer, nullable=False),  # the published revision objected to
    Column("uscc", String(18), ForeignKey("institutions.uscc"), nullable=False),
    Column("finding_id", String(64), ForeignKey("findings.finding_id")),
    Column("filed_by", Text, nullable=False),  # who objects
    Column("filed_at", UTCDateTime(), nullable=False),
    Column("recorded_by", Text, nullable=False),  # who recorded it (the key or CLI user)
    Column("text", Text, nullable=False),
    Column("status", String(16), nullable=False, server_default="filed"),
    Column("resolved_by", Text),
    Column("resolved_at", UTCDateTime()),
    Column("resolution", Text),  # the reason given when upheld or rejected
    Column("correction_revision", Integer),  # the draft computed when upheld
)
