"""SQLAlchemy 2 models: the eight entities of the design, plus variable revisions.

Every table is created by Alembic (``migrations/``), never by ``create_all`` in production, and
the migration test checks that these models and the migrations agree. Enumerations are stored
as short strings (not native enums) so SQLite and PostgreSQL share one schema and adding a value
needs no ``ALTER TYPE``.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import Uuid

__all__ = [
    "Base",
    "VariableType",
    "PromptOrigin",
    "ParseStatus",
    "JobKind",
    "JobStatus",
    "ExtractionStatus",
    "LogLevel",
    "Project",
    "Variable",
    "VariableRevision",
    "Prompt",
    "Document",
    "ProcessingJob",
    "Extraction",
    "ExtractionFeedback",
    "ProcessingLog",
    "JobShard",
    "LLMBatch",
    "utcnow",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Timezone-aware now in UTC; every timestamp in the database is UTC."""
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, uuid.UUID: Uuid}


class VariableType(str, enum.Enum):
    TEXT = "TEXT"
    CATEGORY = "CATEGORY"
    NUMBER = "NUMBER"
    DATE = "DATE"
    BOOLEAN = "BOOLEAN"


class PromptOrigin(str, enum.Enum):
    GENERATED = "generated"
    REFINED = "refined"
    MANUAL = "manual"


class ParseStatus(str, enum.Enum):
    PENDING = "pending"
    OK = "ok"
    FAILED = "failed"
    EMPTY = "empty"


class JobKind(str, enum.Enum):
    SAMPLE = "SAMPLE"
    FULL = "FULL"


class JobStatus(str, enum.Enum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class ExtractionStatus(str, enum.Enum):
    OK = "ok"
    NOT_FOUND = "not_found"
    FAILED = "failed"


class LogLevel(str, enum.Enum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


def _enum(enum_cls: type[enum.Enum], length: int = 16) -> SAEnum:
    """A portable string-backed enum column type (values, not names, are stored)."""
    return SAEnum(
        enum_cls,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class Project(TimestampMixin, Base):
    """A codebook: the variables to extract and the context that frames them."""

    __tablename__ = "projects"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    domain_context: Mapped[str] = mapped_column(Text, default="")
    schema_version: Mapped[int] = mapped_column(Integer, default=1)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    variables: Mapped[list[Variable]] = relationship(
        back_populates="project", cascade="all, delete-orphan", passive_deletes=True,
        order_by="Variable.position",
    )
    documents: Mapped[list[Document]] = relationship(
        back_populates="project", cascade="all, delete-orphan", passive_deletes=True
    )
    jobs: Mapped[list[ProcessingJob]] = relationship(
        back_populates="project", cascade="all, delete-orphan", passive_deletes=True
    )


class Variable(TimestampMixin, Base):
    """One typed field of the codebook. Deleting sets ``deleted_at`` so history stays."""

    __tablename__ = "variables"
    __table_args__ = (
        # A name is unique among the live variables of a project; deleted ones may repeat it.
        Index(
            "uq_variables_project_id_name_live",
            "project_id",
            "name",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(63))
    label: Mapped[str] = mapped_column(String(200), default="")
    type: Mapped[VariableType] = mapped_column(_enum(VariableType))
    instructions: Mapped[str] = mapped_column(Text, default="")
    categories: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    #: Other words per category label that name it ({"Industry": ["pharmaceutical company"]}):
    #: the support check and value normalisation read them as the label.
    category_aliases: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    allow_other: Mapped[bool] = mapped_column(Boolean, default=False)
    multi_select: Mapped[bool] = mapped_column(Boolean, default=False)
    unit: Mapped[str | None] = mapped_column(String(50), nullable=True)
    format_hint: Mapped[str | None] = mapped_column(String(200), nullable=True)
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    position: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    project: Mapped[Project] = relationship(back_populates="variables")
    prompts: Mapped[list[Prompt]] = relationship(
        back_populates="variable", cascade="all, delete-orphan", passive_deletes=True,
        order_by="Prompt.version",
    )
    revisions: Mapped[list[VariableRevision]] = relationship(
        back_populates="variable", cascade="all, delete-orphan", passive_deletes=True,
        order_by="VariableRevision.version",
    )

    @property
    def is_live(self) -> bool:
        return self.deleted_at is None


class VariableRevision(Base):
    """A snapshot of a variable at one version, so ``variable history`` can show every change."""

    __tablename__ = "variable_revisions"
    __table_args__ = (UniqueConstraint("variable_id", "version"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    variable_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("variables.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    schema_version: Mapped[int] = mapped_column(Integer)
    change: Mapped[str] = mapped_column(String(16))  # created / updated / deleted
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    variable: Mapped[Variable] = relationship(back_populates="revisions")


class Prompt(Base):
    """One version of a variable's prompt; exactly one per variable is current."""

    __tablename__ = "prompts"
    __table_args__ = (
        UniqueConstraint("variable_id", "version"),
        Index(
            "uq_prompts_variable_id_current",
            "variable_id",
            unique=True,
            sqlite_where=text("is_current"),
            postgresql_where=text("is_current"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    variable_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("variables.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    variable_version: Mapped[int] = mapped_column(Integer, default=1)
    system_template: Mapped[str] = mapped_column(Text)
    user_template: Mapped[str] = mapped_column(Text)
    examples: Mapped[list[Any]] = mapped_column(JSON, default=list)
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    temperature: Mapped[float] = mapped_column(Float, default=0.0)
    max_tokens: Mapped[int] = mapped_column(Integer, default=256)
    origin: Mapped[PromptOrigin] = mapped_column(_enum(PromptOrigin))
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("prompts.id", ondelete="SET NULL"), nullable=True, index=True
    )
    rationale: Mapped[str] = mapped_column(Text, default="")
    is_current: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    variable: Mapped[Variable] = relationship(back_populates="prompts")
    parent: Mapped[Prompt | None] = relationship(remote_side=[id])


class Document(TimestampMixin, Base):
    """A source file of a project: its text, page map and parse outcome."""

    __tablename__ = "documents"
    __table_args__ = (
        UniqueConstraint("project_id", "content_hash"),
        Index("ix_documents_project_id_parse_status", "project_id", "parse_status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(String(500))
    source_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    content_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    mime: Mapped[str | None] = mapped_column(String(100), nullable=True)
    size_bytes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    page_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    page_offsets: Mapped[list[Any]] = mapped_column(JSON, default=list)
    doc_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    parse_status: Mapped[ParseStatus] = mapped_column(_enum(ParseStatus), default=ParseStatus.PENDING)
    parse_error: Mapped[str | None] = mapped_column(Text, nullable=True)

    project: Mapped[Project] = relationship(back_populates="documents")


class ProcessingJob(TimestampMixin, Base):
    """One sample or full run; its counters are updated as work completes."""

    __tablename__ = "processing_jobs"
    __table_args__ = (Index("ix_processing_jobs_project_id_status", "project_id", "status"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[JobKind] = mapped_column(_enum(JobKind))
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus), default=JobStatus.PENDING)
    documents_total: Mapped[int] = mapped_column(Integer, default=0)
    documents_completed: Mapped[int] = mapped_column(Integer, default=0)
    documents_failed: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    flow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    prompt_snapshot: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    document_ids: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    mode: Mapped[str | None] = mapped_column(String(32), nullable=True)
    llm_calls: Mapped[int] = mapped_column(Integer, default=0)
    cells_reused: Mapped[int] = mapped_column(Integer, default=0)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    #: Of tokens_in, those the server served from its prompt cache (when it reports them).
    tokens_cached: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cost_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)

    project: Mapped[Project] = relationship(back_populates="jobs")
    extractions: Mapped[list[Extraction]] = relationship(
        back_populates="job", cascade="all, delete-orphan", passive_deletes=True
    )
    logs: Mapped[list[ProcessingLog]] = relationship(
        back_populates="job", cascade="all, delete-orphan", passive_deletes=True
    )


class Extraction(Base):
    """The value of one variable in one document, as found by one job."""

    __tablename__ = "extractions"
    __table_args__ = (
        UniqueConstraint("job_id", "document_id", "variable_id"),
        Index("ix_extractions_job_id_status", "job_id", "status"),
        Index("ix_extractions_document_id_variable_id", "document_id", "variable_id"),
        Index("ix_extractions_prompt_id_document_id", "prompt_id", "document_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("processing_jobs.id", ondelete="CASCADE"), index=True
    )
    document_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    variable_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("variables.id", ondelete="CASCADE"), index=True
    )
    prompt_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("prompts.id", ondelete="SET NULL"), nullable=True, index=True
    )
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    raw_answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)
    self_confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    evidence_quote: Mapped[str | None] = mapped_column(Text, nullable=True)
    evidence_start: Mapped[int | None] = mapped_column(Integer, nullable=True)
    evidence_end: Mapped[int | None] = mapped_column(Integer, nullable=True)
    evidence_page: Mapped[int | None] = mapped_column(Integer, nullable=True)
    grounded: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    #: supported / unsupported / not_checkable: can the value be read from its own quote?
    support: Mapped[str | None] = mapped_column(String(16), nullable=True)
    support_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Second opinions (extraction/run/second_opinion.py), when asked: the share of the
    #: extra answers that agreed, agreed / split / disputed, and what they said.
    agreement: Mapped[float | None] = mapped_column(Float, nullable=True)
    opinion: Mapped[str | None] = mapped_column(String(16), nullable=True)
    opinion_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    status: Mapped[ExtractionStatus] = mapped_column(_enum(ExtractionStatus))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    #: Of tokens_in, those the server served from its prompt cache (when it reports them).
    tokens_cached: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    reused_from_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("extractions.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    job: Mapped[ProcessingJob] = relationship(back_populates="extractions")
    document: Mapped[Document] = relationship()
    variable: Mapped[Variable] = relationship()
    prompt: Mapped[Prompt | None] = relationship()
    feedback: Mapped[list[ExtractionFeedback]] = relationship(
        back_populates="extraction", cascade="all, delete-orphan", passive_deletes=True
    )


class ExtractionFeedback(TimestampMixin, Base):
    """A reviewer's verdict on one extraction; refinement learns from these."""

    __tablename__ = "extraction_feedback"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    extraction_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("extractions.id", ondelete="CASCADE"), index=True
    )
    is_correct: Mapped[bool] = mapped_column(Boolean)
    corrected_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    comment: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(32), default="cli")

    extraction: Mapped[Extraction] = relationship(back_populates="feedback")


class ProcessingLog(Base):
    """An event of a job: errors with their context, progress milestones, warnings."""

    __tablename__ = "processing_logs"
    __table_args__ = (Index("ix_processing_logs_job_id_level", "job_id", "level"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("processing_jobs.id", ondelete="CASCADE"), index=True
    )
    document_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("documents.id", ondelete="SET NULL"), nullable=True, index=True
    )
    variable_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("variables.id", ondelete="SET NULL"), nullable=True, index=True
    )
    level: Mapped[LogLevel] = mapped_column(_enum(LogLevel, 8), default=LogLevel.INFO)
    event: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    job: Mapped[ProcessingJob] = relationship(back_populates="logs")


class JobShard(TimestampMixin, Base):
    """One shard of a sharded full run: its documents, its current flow run, its attempts.

    The assignment is stored so any worker can run any shard and a retried or resumed shard
    works on the same documents; the shard's cells are rows of the job like any other.
    """

    __tablename__ = "job_shards"
    __table_args__ = (UniqueConstraint("job_id", "index"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("processing_jobs.id", ondelete="CASCADE"), index=True
    )
    index: Mapped[int] = mapped_column(Integer)
    document_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    flow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                          nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class LLMBatch(TimestampMixin, Base):
    """One provider batch of a job run in batch mode (``extraction/run/batch/``).

    The row is written before its file is uploaded and gets the provider's ids as soon as
    they exist, so a killed process never loses a batch nor submits it twice: submission is
    finished (or adopted from the provider's list) from the row, collection resumes from it.
    ``status`` is the provider's (``preparing`` until it has a batch); ``collected_at`` says
    its results are stored. ``attempt`` 2 holds the documents resubmitted after their lines
    failed or expired. Tokens are what the batch's lines used (priced at the batch rate).
    """

    __tablename__ = "llm_batches"
    __table_args__ = (UniqueConstraint("job_id", "part"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("processing_jobs.id", ondelete="CASCADE"), index=True
    )
    part: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    provider_batch_id: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    input_file_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    output_file_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    error_file_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(32), default="preparing")
    document_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    lines_total: Mapped[int] = mapped_column(Integer, default=0)
    lines_completed: Mapped[int] = mapped_column(Integer, default=0)
    lines_failed: Mapped[int] = mapped_column(Integer, default=0)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    tokens_cached: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    collected_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
