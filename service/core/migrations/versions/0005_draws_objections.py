"""Random-inspection draws (write-once) and objections filed in a publicity period (never
deleted, final once resolved), each guarded by triggers like snapshots and findings.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 21:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DRAWN = "draws are write-once: make a new draw instead"
NO_DELETE = "objections are never deleted: resolve the objection instead"
RESOLVED = "a resolved objection is final"

SQLITE_TRIGGERS = [
    ("draws_no_update", "UPDATE", "draws", None, DRAWN),
    ("draws_no_delete", "DELETE", "draws", None, DRAWN),
    ("objections_no_delete", "DELETE", "objections", None, NO_DELETE),
    ("objections_resolved_final", "UPDATE", "objections", "OLD.status <> 'filed'", RESOLVED),
]

# refuse() is migration 0001's guard function: it raises its argument.
POSTGRES_GUARDS = [
    "CREATE TRIGGER draws_write_once BEFORE UPDATE OR DELETE ON draws FOR EACH ROW "
    f"EXECUTE FUNCTION refuse('{DRAWN}')",
    "CREATE TRIGGER objections_no_delete BEFORE DELETE ON objections FOR EACH ROW "
    f"EXECUTE FUNCTION refuse('{NO_DELETE}')",
    "CREATE TRIGGER objections_resolved_final BEFORE UPDATE ON objections FOR EACH ROW "
    f"WHEN (OLD.status <> 'filed') EXECUTE FUNCTION refuse('{RESOLVED}')",
    "CREATE TRIGGER draws_no_truncate BEFORE TRUNCATE ON draws "
    f"FOR EACH STATEMENT EXECUTE FUNCTION refuse('{DRAWN}')",
    "CREATE TRIGGER objections_no_truncate BEFORE TRUNCATE ON objections "
    f"FOR EACH STATEMENT EXECUTE FUNCTION refuse('{NO_DELETE}')",
    "GRANT SELECT, INSERT ON draws, objections TO credit_app",
    "GRANT UPDATE ON objections TO credit_app",
    "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO credit_app",
]


def _sqlite_guard(name: str, event: str, table: str, when: str | None, message: str) -> str:
    condition = f" WHEN {when}" if when else ""
    return (
        f"CREATE TRIGGER {name} BEFORE {event} ON {table}{condition} "
        f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
    )


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "draws",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("snapshot_hash", sa.Text(), nullable=False),
        sa.Column("scale", sa.String(length=16), nullable=False),
        sa.Column("procedure", sa.Text(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("seed", sa.Text(), nullable=False),
        sa.Column("seed_source", sa.String(length=16), nullable=False),
        sa.Column("weights", sa.Text(), nullable=False),
        sa.Column("population", sa.Text(), nullable=False),
        sa.Column("excluded", sa.Text(), nullable=False),
        sa.Column("quotas", sa.Text(), nullable=False),
        sa.Column("drawn", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_draws_year", "draws", ["year"])
    op.create_table(
        "objections",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("uscc", sa.String(length=18), nullable=False),
        sa.Column("finding_id", sa.String(length=64), nullable=True),
        sa.Column("filed_by", sa.Text(), nullable=False),
        sa.Column("filed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="filed", nullable=False),
        sa.Column("resolved_by", sa.Text(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("correction_revision", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["uscc"], ["institutions.uscc"]),
        sa.ForeignKeyConstraint(["finding_id"], ["findings.finding_id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_objections_year", "objections", ["year"])
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for trigger in SQLITE_TRIGGERS:
            op.execute(_sqlite_guard(*trigger))
    elif dialect == "postgresql":
        for statement in POSTGRES_GUARDS:
            op.execute(statement)


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("REVOKE ALL ON draws, objections FROM credit_app")
    # Dropping a table drops its triggers.
    op.drop_index("ix_objections_year", table_name="objections")
    op.drop_table("objections")
    op.drop_index("ix_draws_year", table_name="draws")
    op.drop_table("draws")
