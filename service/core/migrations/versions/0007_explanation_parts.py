"""Explanations stored in parts: what every explanation of a snapshot shares, once, in
`snapshots.explanation_parts`; each row's `explanation` then holds only the institution's own
parts (`scoring.explain_parts`).

The column is NULL on every snapshot stored before, whose rows keep each explanation whole, and
a content hash covers it only when set: old snapshots keep their hashes and still verify.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 00:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    # Plain ADD COLUMN, not a batch (which on SQLite would copy the table and lose its guards).
    op.add_column("snapshots", sa.Column("explanation_parts", sa.Text(), nullable=True))


def downgrade() -> None:
    """Downgrade schema: refused while a snapshot stores its explanations in parts, which the
    schema before has nowhere to keep (a snapshot never changes, so they cannot be rejoined
    into its rows)."""
    stored = op.get_bind().scalar(
        sa.text("SELECT count(*) FROM snapshots WHERE explanation_parts IS NOT NULL")
    )
    if stored:
        raise RuntimeError(
            f"{stored} snapshot(s) store their explanations in parts (migration 0007): undoing "
            "0007 would lose them; restore a backup taken before 0007 instead"
        )
    op.execute("ALTER TABLE snapshots DROP COLUMN explanation_parts")
