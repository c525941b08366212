"""initial schema: the eight entities and variable revisions

Why: the first schema of extractflow. Enumerations are plain strings (native_enum=False) so the
same revision runs on SQLite and PostgreSQL; partial unique indexes keep variable names unique
among live rows only (soft delete) and allow one current prompt per variable.

Revision ID: 0001_initial
Revises: 
Create Date: 2026-11-24 10:48:08.524807
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0001_initial'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('projects',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('domain_context', sa.Text(), nullable=False),
    sa.Column('schema_version', sa.Integer(), nullable=False),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_projects')),
    sa.UniqueConstraint('name', name=op.f('uq_projects_name'))
    )
    op.create_table('documents',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('project_id', sa.Uuid(), nullable=False),
    sa.Column('filename', sa.String(length=500), nullable=False),
    sa.Column('source_path', sa.Text(), nullable=True),
    sa.Column('content_hash', sa.String(length=64), nullable=True),
    sa.Column('mime', sa.String(length=100), nullable=True),
    sa.Column('size_bytes', sa.Integer(), nullable=True),
    sa.Column('page_count', sa.Integer(), nullable=True),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('page_offsets', sa.JSON(), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('parse_status', sa.Enum('pending', 'ok', 'failed', 'empty', name='parsestatus', native_enum=False, length=16), nullable=False),
    sa.Column('parse_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_documents_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_documents')),
    sa.UniqueConstraint('project_id', 'content_hash', name=op.f('uq_documents_project_id_content_hash'))
    )
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_documents_project_id'), ['project_id'], unique=False)
        batch_op.create_index('ix_documents_project_id_parse_status', ['project_id', 'parse_status'], unique=False)

    op.create_table('processing_jobs',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('project_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.Enum('SAMPLE', 'FULL', name='jobkind', native_enum=False, length=16), nullable=False),
    sa.Column('status', sa.Enum('PENDING', 'PROCESSING', 'COMPLETE', 'FAILED', 'CANCELLED', name='jobstatus', native_enum=False, length=16), nullable=False),
    sa.Column('documents_total', sa.Integer(), nullable=False),
    sa.Column('documents_completed', sa.Integer(), nullable=False),
    sa.Column('documents_failed', sa.Integer(), nullable=False),
    sa.Column('progress', sa.Float(), nullable=False),
    sa.Column('flow_run_id', sa.String(length=64), nullable=True),
    sa.Column('prompt_snapshot', sa.JSON(), nullable=False),
    sa.Column('document_ids', sa.JSON(), nullable=True),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=True),
    sa.Column('mode', sa.String(length=32), nullable=True),
    sa.Column('llm_calls', sa.Integer(), nullable=False),
    sa.Column('cells_reused', sa.Integer(), nullable=False),
    sa.Column('tokens_in', sa.Integer(), nullable=False),
    sa.Column('tokens_out', sa.Integer(), nullable=False),
    sa.Column('cost_usd', sa.Float(), nullable=True),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_processing_jobs_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_processing_jobs'))
    )
    with op.batch_alter_table('processing_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_processing_jobs_flow_run_id'), ['flow_run_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_processing_jobs_project_id'), ['project_id'], unique=False)
        batch_op.create_index('ix_processing_jobs_project_id_status', ['project_id', 'status'], unique=False)

    op.create_table('variables',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('project_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.Column('type', sa.Enum('TEXT', 'CATEGORY', 'NUMBER', 'DATE', 'BOOLEAN', name='variabletype', native_enum=False, length=16), nullable=False),
    sa.Column('instructions', sa.Text(), nullable=False),
    sa.Column('categories', sa.JSON(), nullable=True),
    sa.Column('allow_other', sa.Boolean(), nullable=False),
    sa.Column('multi_select', sa.Boolean(), nullable=False),
    sa.Column('unit', sa.String(length=50), nullable=True),
    sa.Column('format_hint', sa.String(length=200), nullable=True),
    sa.Column('required', sa.Boolean(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_variables_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_variables'))
    )
    with op.batch_alter_table('variables', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_variables_project_id'), ['project_id'], unique=False)
        batch_op.create_index('uq_variables_project_id_name_live', ['project_id', 'name'], unique=True, sqlite_where=sa.text('deleted_at IS NULL'), postgresql_where=sa.text('deleted_at IS NULL'))

    op.create_table('processing_logs',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('job_id', sa.Uuid(), nullable=False),
    sa.Column('document_id', sa.Uuid(), nullable=True),
    sa.Column('variable_id', sa.Uuid(), nullable=True),
    sa.Column('level', sa.Enum('DEBUG', 'INFO', 'WARNING', 'ERROR', name='loglevel', native_enum=False, length=8), nullable=False),
    sa.Column('event', sa.String(length=64), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['document_id'], ['documents.id'], name=op.f('fk_processing_logs_document_id_documents'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['job_id'], ['processing_jobs.id'], name=op.f('fk_processing_logs_job_id_processing_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['variable_id'], ['variables.id'], name=op.f('fk_processing_logs_variable_id_variables'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_processing_logs'))
    )
    with op.batch_alter_table('processing_logs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_processing_logs_document_id'), ['document_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_processing_logs_job_id'), ['job_id'], unique=False)
        batch_op.create_index('ix_processing_logs_job_id_level', ['job_id', 'level'], unique=False)
        batch_op.create_index(batch_op.f('ix_processing_logs_variable_id'), ['variable_id'], unique=False)

    op.create_table('prompts',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('variable_id', sa.Uuid(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('variable_version', sa.Integer(), nullable=False),
    sa.Column('system_template', sa.Text(), nullable=False),
    sa.Column('user_template', sa.Text(), nullable=False),
    sa.Column('examples', sa.JSON(), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=True),
    sa.Column('temperature', sa.Float(), nullable=False),
    sa.Column('max_tokens', sa.Integer(), nullable=False),
    sa.Column('origin', sa.Enum('generated', 'refined', 'manual', name='promptorigin', native_enum=False, length=16), nullable=False),
    sa.Column('parent_id', sa.Uuid(), nullable=True),
    sa.Column('rationale', sa.Text(), nullable=False),
    sa.Column('is_current', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['prompts.id'], name=op.f('fk_prompts_parent_id_prompts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['variable_id'], ['variables.id'], name=op.f('fk_prompts_variable_id_variables'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prompts')),
    sa.UniqueConstraint('variable_id', 'version', name=op.f('uq_prompts_variable_id_version'))
    )
    with op.batch_alter_table('prompts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_prompts_parent_id'), ['parent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_prompts_variable_id'), ['variable_id'], unique=False)
        batch_op.create_index('uq_prompts_variable_id_current', ['variable_id'], unique=True, sqlite_where=sa.text('is_current'), postgresql_where=sa.text('is_current'))

    op.create_table('variable_revisions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('variable_id', sa.Uuid(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('schema_version', sa.Integer(), nullable=False),
    sa.Column('change', sa.String(length=16), nullable=False),
    sa.Column('snapshot', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['variable_id'], ['variables.id'], name=op.f('fk_variable_revisions_variable_id_variables'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_variable_revisions')),
    sa.UniqueConstraint('variable_id', 'version', name=op.f('uq_variable_revisions_variable_id_version'))
    )
    with op.batch_alter_table('variable_revisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_variable_revisions_variable_id'), ['variable_id'], unique=False)

    op.create_table('extractions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('job_id', sa.Uuid(), nullable=False),
    sa.Column('document_id', sa.Uuid(), nullable=False),
    sa.Column('variable_id', sa.Uuid(), nullable=False),
    sa.Column('prompt_id', sa.Uuid(), nullable=True),
    sa.Column('model', sa.String(length=200), nullable=True),
    sa.Column('value', sa.JSON(), nullable=True),
    sa.Column('raw_answer', sa.Text(), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=True),
    sa.Column('self_confidence', sa.Float(), nullable=True),
    sa.Column('evidence_quote', sa.Text(), nullable=True),
    sa.Column('evidence_start', sa.Integer(), nullable=True),
    sa.Column('evidence_end', sa.Integer(), nullable=True),
    sa.Column('evidence_page', sa.Integer(), nullable=True),
    sa.Column('grounded', sa.Boolean(), nullable=True),
    sa.Column('status', sa.Enum('ok', 'not_found', 'failed', name='extractionstatus', native_enum=False, length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('tokens_in', sa.Integer(), nullable=False),
    sa.Column('tokens_out', sa.Integer(), nullable=False),
    sa.Column('latency_ms', sa.Float(), nullable=True),
    sa.Column('reused_from_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['document_id'], ['documents.id'], name=op.f('fk_extractions_document_id_documents'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['processing_jobs.id'], name=op.f('fk_extractions_job_id_processing_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['prompt_id'], ['prompts.id'], name=op.f('fk_extractions_prompt_id_prompts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['reused_from_id'], ['extractions.id'], name=op.f('fk_extractions_reused_from_id_extractions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['variable_id'], ['variables.id'], name=op.f('fk_extractions_variable_id_variables'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_extractions')),
    sa.UniqueConstraint('job_id', 'document_id', 'variable_id', name=op.f('uq_extractions_job_id_document_id_variable_id'))
    )
    with op.batch_alter_table('extractions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_extractions_confidence'), ['confidence'], unique=False)
        batch_op.create_index(batch_op.f('ix_extractions_document_id'), ['document_id'], unique=False)
        batch_op.create_index('ix_extractions_document_id_variable_id', ['document_id', 'variable_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_extractions_job_id'), ['job_id'], unique=False)
        batch_op.create_index('ix_extractions_job_id_status', ['job_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_extractions_prompt_id'), ['prompt_id'], unique=False)
        batch_op.create_index('ix_extractions_prompt_id_document_id', ['prompt_id', 'document_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_extractions_variable_id'), ['variable_id'], unique=False)

    op.create_table('extraction_feedback',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('extraction_id', sa.Uuid(), nullable=False),
    sa.Column('is_correct', sa.Boolean(), nullable=False),
    sa.Column('corrected_value', sa.JSON(), nullable=True),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['extraction_id'], ['extractions.id'], name=op.f('fk_extraction_feedback_extraction_id_extractions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_extraction_feedback'))
    )
    with op.batch_alter_table('extraction_feedback', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_extraction_feedback_extraction_id'), ['extraction_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('extraction_feedback', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_extraction_feedback_extraction_id'))

    op.drop_table('extraction_feedback')
    with op.batch_alter_table('extractions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_extractions_variable_id'))
        batch_op.drop_index('ix_extractions_prompt_id_document_id')
        batch_op.drop_index(batch_op.f('ix_extractions_prompt_id'))
        batch_op.drop_index('ix_extractions_job_id_status')
        batch_op.drop_index(batch_op.f('ix_extractions_job_id'))
        batch_op.drop_index('ix_extractions_document_id_variable_id')
        batch_op.drop_index(batch_op.f('ix_extractions_document_id'))
        batch_op.drop_index(batch_op.f('ix_extractions_confidence'))

    op.drop_table('extractions')
    with op.batch_alter_table('variable_revisions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_variable_revisions_variable_id'))

    op.drop_table('variable_revisions')
    with op.batch_alter_table('prompts', schema=None) as batch_op:
        batch_op.drop_index('uq_prompts_variable_id_current', sqlite_where=sa.text('is_current'), postgresql_where=sa.text('is_current'))
        batch_op.drop_index(batch_op.f('ix_prompts_variable_id'))
        batch_op.drop_index(batch_op.f('ix_prompts_parent_id'))

    op.drop_table('prompts')
    with op.batch_alter_table('processing_logs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_processing_logs_variable_id'))
        batch_op.drop_index('ix_processing_logs_job_id_level')
        batch_op.drop_index(batch_op.f('ix_processing_logs_job_id'))
        batch_op.drop_index(batch_op.f('ix_processing_logs_document_id'))

    op.drop_table('processing_logs')
    with op.batch_alter_table('variables', schema=None) as batch_op:
        batch_op.drop_index('uq_variables_project_id_name_live', sqlite_where=sa.text('deleted_at IS NULL'), postgresql_where=sa.text('deleted_at IS NULL'))
        batch_op.drop_index(batch_op.f('ix_variables_project_id'))

    op.drop_table('variables')
    with op.batch_alter_table('processing_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_processing_jobs_project_id_status')
        batch_op.drop_index(batch_op.f('ix_processing_jobs_project_id'))
        batch_op.drop_index(batch_op.f('ix_processing_jobs_flow_run_id'))

    op.drop_table('processing_jobs')
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.drop_index('ix_documents_project_id_parse_status')
        batch_op.drop_index(batch_op.f('ix_documents_project_id'))

    op.drop_table('documents')
    op.drop_table('projects')
