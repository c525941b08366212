"""the shards of a sharded full run

Why: a full run split into shards runs each shard as a child flow run on any worker of the
pool. The parent stores which documents each shard has, the shard's current flow run and
its attempts, so a crashed shard is retried on the same documents (its written cells kept)
and a resumed job starts only the shards with work left. The shard's heartbeat tells the
parent that a shard whose worker died is gone, since nothing else reports that.

Revision ID: 0005_shards
Revises: 0004_aliases_second_opinions
Create Date: 2026-12-02 02:30:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_shards"
down_revision: str | None = "0004_aliases_second_opinions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_shards",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("document_ids", sa.JSON(), nullable=False),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["processing_jobs.id"],
                                name=op.f("fk_job_shards_job_id_processing_jobs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_shards")),
        sa.UniqueConstraint("job_id", "index", name=op.f("uq_job_shards_job_id_index")),
    )
    with op.batch_alter_table("job_shards") as batch:
        batch.create_index(batch.f("ix_job_shards_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job_shards") as batch:
        batch.drop_index(batch.f("ix_job_shards_job_id"))
    op.drop_table("job_shards")
