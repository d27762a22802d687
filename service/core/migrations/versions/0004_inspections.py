"""The inspection register: one row per institution per task, never edited or deleted.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 21:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FINAL = "inspections are never edited or deleted: record the next inspection as a new row"

SQLITE_GUARDS = [
    f"CREATE TRIGGER inspections_no_{event.lower()} BEFORE {event} ON inspections "
    f"BEGIN SELECT RAISE(ABORT, '{FINAL}'); END"
    for event in ("UPDATE", "DELETE")
]

# refuse() is migration 0001's guard function; the service role may only read and add.
POSTGRES_GUARDS = [
    "CREATE TRIGGER inspections_final BEFORE UPDATE OR DELETE ON inspections FOR EACH ROW "
    f"EXECUTE FUNCTION refuse('{FINAL}')",
    "CREATE TRIGGER inspections_no_truncate BEFORE TRUNCATE ON inspections "
    f"FOR EACH STATEMENT EXECUTE FUNCTION refuse('{FINAL}')",
    "GRANT SELECT, INSERT ON inspections TO credit_app",
]


def upgrade() -> None:
    """Upgrade schema."""
    # Plain CREATE TABLE and CREATE INDEX (no batch: on SQLite a batch copies tables).
    op.create_table(
        "inspections",
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("uscc", sa.String(length=18), nullable=False),
        sa.Column("inspected_on", sa.Date(), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["uscc"], ["institutions.uscc"]),
        sa.PrimaryKeyConstraint("task_id", "uscc"),
    )
    op.create_index("ix_inspections_inspected_on", "inspections", ["inspected_on"])
    guards = SQLITE_GUARDS if op.get_bind().dialect.name == "sqlite" else POSTGRES_GUARDS
    for statement in guards:
        op.execute(statement)


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("REVOKE ALL ON inspections FROM credit_app")
    op.drop_index("ix_inspections_inspected_on", table_name="inspections")
    op.drop_table("inspections")  # its triggers go with it
