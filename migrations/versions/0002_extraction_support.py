"""extractions.support and support_reason: does the value agree with its own evidence quote

Why: grounding proves a quote is in the document, not that the value can be read from it; the
value–quote check (extraction/run/support.py) is stored with each cell so results, exports and
the review workbook can flag it and the stored confidence can be explained. Both columns are
nullable: rows written before this revision were never checked. batch_alter_table so SQLite
(which cannot add constraints in place) and PostgreSQL run the same revision.

Revision ID: 0002_extraction_support
Revises: 0001_initial
Create Date: 2026-12-01 23:40:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_extraction_support"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("extractions") as batch:
        batch.add_column(sa.Column("support", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("support_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("extractions") as batch:
        batch.drop_column("support_reason")
        batch.drop_column("support")
