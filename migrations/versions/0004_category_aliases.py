"""category aliases per CATEGORY variable

Why: reports rarely write a category's label ("Industry"); they name it in other words ("a
pharmaceutical company"). A codebook may now declare such aliases per category, so the
value–quote check can tell a quote that names the chosen category from one that names another,
and an answer given as an alias is read as its label. One nullable JSON column on variables
(label → list of aliases); existing variables have none (NULL).

Revision ID: 0004_category_aliases
Revises: 0003_cached_prompt_tokens
Create Date: 2026-12-02 02:30:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_category_aliases"
down_revision: str | None = "0003_cached_prompt_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("variables") as batch:
        batch.add_column(sa.Column("category_aliases", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("variables") as batch:
        batch.drop_column("category_aliases")
