"""cached prompt tokens per extraction and per job

Why: prompts now keep what a project's calls share (system message, variable blocks, worked
examples) before the document, so providers' prompt caches and llama.cpp's prompt cache reuse
it. The servers say how much they reused in ``usage.prompt_tokens_details.cached_tokens``;
storing it per extraction and summing it per job shows whether the layout pays off and lets
cached tokens be priced apart. Existing rows get 0 (nothing was recorded).

Revision ID: 0003_cached_prompt_tokens
Revises: 0002_extraction_support
Create Date: 2026-12-01 23:30:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_cached_prompt_tokens"
down_revision: str | None = "0002_extraction_support"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("processing_jobs", "extractions")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("tokens_cached", sa.Integer(), nullable=False,
                                       server_default="0"))


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("tokens_cached")
