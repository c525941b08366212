"""category aliases per CATEGORY variable; second-opinion verdicts per extraction

Why: reports rarely write a category's label ("Industry"); they name it in other words ("a
pharmaceutical company"). A codebook may now declare such aliases per category, so the
value–quote check can tell a quote that names the chosen category from one that names another,
and an answer given as an alias is read as its label. One nullable JSON column on variables
(label → list of aliases); existing variables have none (NULL).

Second opinions (self-consistency samples, a challenger model) are optional extra calls; what
they said is kept with the cell so a reviewer sees why its confidence fell or why it is empty:
``agreement`` (share of the second answers that agreed with the stored one), ``opinion``
(agreed / split / disputed) and ``opinion_reason`` in words. NULL where none was asked.

Revision ID: 0004_aliases_second_opinions
Revises: 0003_cached_prompt_tokens
Create Date: 2026-12-02 02:30:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_aliases_second_opinions"
down_revision: str | None = "0003_cached_prompt_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("variables") as batch:
        batch.add_column(sa.Column("category_aliases", sa.JSON(), nullable=True))
    with op.batch_alter_table("extractions") as batch:
        batch.add_column(sa.Column("agreement", sa.Float(), nullable=True))
        batch.add_column(sa.Column("opinion", sa.String(16), nullable=True))
        batch.add_column(sa.Column("opinion_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("extractions") as batch:
        for column in ("opinion_reason", "opinion", "agreement"):
            batch.drop_column(column)
    with op.batch_alter_table("variables") as batch:
        batch.drop_column("category_aliases")
