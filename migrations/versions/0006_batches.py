"""llm_batches: the provider batches of a job run in batch mode

Why: a batch run submits its requests to the provider's Batch API and collects the answers
hours later, possibly from another process. Each batch is a row, written before its file is
uploaded and updated with the provider's file and batch ids the moment they exist, so a
killed process neither loses a batch nor submits it twice, and `extractflow run collect`
finds every batch of a job from the database alone. Line counts and tokens per batch let the
cost be priced at the batch rate.

Revision ID: 0006_batches
Revises: 0005_shards
Create Date: 2026-12-02 02:40:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_batches"
down_revision: str | None = "0005_shards"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "llm_batches",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("provider_batch_id", sa.String(length=200), nullable=True),
        sa.Column("input_file_id", sa.String(length=200), nullable=True),
        sa.Column("output_file_id", sa.String(length=200), nullable=True),
        sa.Column("error_file_id", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("document_ids", sa.JSON(), nullable=False),
        sa.Column("lines_total", sa.Integer(), nullable=False),
        sa.Column("lines_completed", sa.Integer(), nullable=False),
        sa.Column("lines_failed", sa.Integer(), nullable=False),
        sa.Column("tokens_in", sa.Integer(), nullable=False),
        sa.Column("tokens_out", sa.Integer(), nullable=False),
        sa.Column("tokens_cached", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("collected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["processing_jobs.id"],
                                name="fk_llm_batches_job_id_processing_jobs",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_llm_batches"),
        sa.UniqueConstraint("job_id", "part", name="uq_llm_batches_job_id_part"),
    )
    op.create_index("ix_llm_batches_job_id", "llm_batches", ["job_id"])
    op.create_index("ix_llm_batches_provider_batch_id", "llm_batches", ["provider_batch_id"])


def downgrade() -> None:
    op.drop_index("ix_llm_batches_provider_batch_id", table_name="llm_batches")
    op.drop_index("ix_llm_batches_job_id", table_name="llm_batches")
    op.drop_table("llm_batches")
