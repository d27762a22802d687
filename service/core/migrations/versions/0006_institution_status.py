"""Institution status in a snapshot: the closed institutions it lists as not rated (with the
reason) and the mark of a suspended institution's row.

Both columns are NULL on every snapshot stored before (no closed institution listed, no row
marked), and a content hash covers them only when set: old snapshots keep their hashes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 21:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    # Plain ADD COLUMN, not a batch (which on SQLite would copy the tables and lose their
    # guards).
    op.add_column("snapshots", sa.Column("not_rated", sa.Text(), nullable=True))
    op.add_column("snapshot_rows", sa.Column("status", sa.String(16), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("ALTER TABLE snapshot_rows DROP COLUMN status")
    op.execute("ALTER TABLE snapshots DROP COLUMN not_rated")
