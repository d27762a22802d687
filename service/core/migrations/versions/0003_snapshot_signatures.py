"""Signed snapshots: each publication's Ed25519 signature and the signing key's fingerprint;
and any guard trigger found missing is put back.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 18:10:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from service.core.migrate import restore_guards

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    # Plain ADD COLUMN, not a batch (which on SQLite would copy the table and lose its guards).
    # Snapshots published before this migration keep NULL: unsigned (service.ratings.integrity).
    op.add_column("snapshots", sa.Column("signature", sa.Text(), nullable=True))
    op.add_column("snapshots", sa.Column("key_fingerprint", sa.Text(), nullable=True))
    restore_guards(op.get_bind())


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("ALTER TABLE snapshots DROP COLUMN key_fingerprint")
    op.execute("ALTER TABLE snapshots DROP COLUMN signature")
