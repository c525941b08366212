"""The review page: one self-contained HTML file per job, every value beside its evidence.

A reviewer opens the file from disk (no server, no network: a Content-Security-Policy with
``default-src 'none'`` forbids every fetch), picks a document, and sees its text with each
evidence span highlighted at the stored character offsets, page starts marked, and per value
the variable, typed value, status, confidence, prompt version and model. Verdicts typed in
the page stay in the browser (localStorage, keyed by job) and are exported as a JSON or CSV
file that ``extractflow review import`` reads (:mod:`extraction.review.verdict_files`).

How document content is kept inert: all data goes into ``<script type="application/json">``
blocks (never executed) with ``<``, ``>`` and ``&`` written as JSON escapes, so no document
can close the block; the page's script builds the DOM with ``textContent`` only, and the CSP
allows exactly that one script by its hash.

Why one JSON block per document: a 1,000-document job carries megabytes of text. The browser
tokenises the raw blocks quickly, but parsing them all as JSON and building their DOM would
delay the first paint; each document's block is parsed and rendered only when it is opened.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from jinja2 import Environment, PackageLoader
from markupsafe import Markup
from sqlalchemy import LargeBinary, cast, or_, select
from sqlalchemy.orm import Session

from extraction.errors import ValidationError
from extraction.models import (
    Document,
    Extraction,
    ExtractionStatus,
    ProcessingJob,
    Project,
    Prompt,
    Variable,
)
from extraction.review.corrections import format_value
from extraction.review.feedback import effective_feedback, get_job
from extraction.review.spans import clean_text, segment
from extraction.review.verdict_files import FORMAT as VERDICT_FORMAT
from extraction.review.verdict_files import SOURCE as VERDICT_SOURCE

__all__ = [
    "DEFAULT_LOW_CONFIDENCE",
    "SORTS",
    "PageSummary",
    "build_page_data",
    "render_review_page",
    "write_review_page",
]

#: Values below this confidence count as "low" when no ``min_confidence`` is given.
DEFAULT_LOW_CONFIDENCE = 0.5
SORTS = ("document", "confidence")
Sort = Literal["document", "confidence"]
_STATUSES = tuple(s.value for s in ExtractionStatus)
_ID_BATCH = 500


@dataclass(frozen=True)
class PageSummary:
    """What was written: where, for which job, and how many documents and values it shows."""

    path: Path
    job_id: uuid.UUID
    documents: int
    values: int
    drawn: int
    bytes: int


# --------------------------------------------------------------------------- options


def _check_options(
    session: Session, job: ProcessingJob, *, min_confidence: float | None,
    variable: str | None, status: str | None, sort: str,
) -> None:
    """Refuse options the page could not honour, naming the choices (before any work)."""
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise ValidationError(f"min confidence must be between 0 and 1, not {min_confidence}",
                              field="min_confidence")
    if status is not None and status not in _STATUSES:
        raise ValidationError(f"unknown status '{status}': use one of {', '.join(_STATUSES)}",
                              field="status")
    if sort not in SORTS:
        raise ValidationError(f"unknown sort '{sort}': use one of {', '.join(SORTS)}",
                              field="sort")
    if variable is not None:
        names = list(session.scalars(
            select(Variable.name).where(Variable.project_id == job.project_id)
            .order_by(Variable.position, Variable.name)))
        if variable not in names:
            raise ValidationError(
                f"project has no variable '{variable}' (it has: {', '.join(names) or 'none'})",
                field="variable")


# --------------------------------------------------------------------------- data


def _confidence(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), 4)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as null: JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def _shown(status: ExtractionStatus, value: Any, error: str | None) -> str:
    if status is ExtractionStatus.FAILED:
        return "(failed" + (f": {error})" if error else ")")
    if value is None:
        return "(not stated)"
    return format_value(value)


@dataclass(frozen=True)
class _DocRow:
    id: uuid.UUID
    filename: str
    text: str | None
    page_offsets: list[Any] | None
    page_count: int | None
    parse_status: Any
    parse_error: str | None


def _documents(session: Session, job: ProcessingJob,
               with_cells: set[uuid.UUID]) -> list[_DocRow]:
    """The job's documents: those it extracted from, plus those it was planned on."""
    planned: set[uuid.UUID] = set()
    for ref in job.document_ids or ():
        try:
            planned.add(uuid.UUID(str(ref)))
        except ValueError:
            continue
    ids = list(with_cells | planned)
    # SQLite keeps whatever bytes another tool wrote into a TEXT column, and the driver
    # refuses to decode a non-UTF-8 one (the whole query fails), so the text is read as
    # bytes there and decoded leniently. PostgreSQL only stores valid UTF-8.
    raw = session.get_bind().dialect.name == "sqlite"
    text_column = cast(Document.text, LargeBinary).label("text") if raw else Document.text
    rows: list[Any] = []
    columns = (Document.id, Document.filename, text_column, Document.page_offsets,
               Document.page_count, Document.parse_status, Document.parse_error)
    for start in range(0, len(ids), _ID_BATCH):  # bounded IN lists (SQLite caps parameters)
        for row in session.execute(
                select(*columns).where(Document.id.in_(ids[start:start + _ID_BATCH]))):
            text = row.text
            if isinstance(text, (bytes, memoryview)):
                text = bytes(text).decode("utf-8", errors="replace")
            rows.append(_DocRow(row.id, row.filename, text, row.page_offsets, row.page_count,
                                row.parse_status, row.parse_error))
    rows.sort(key=lambda r: (r.filename, str(r.id)))
    return rows


def build_page_data(
    session: Session,
    job: str | uuid.UUID | ProcessingJob,
    *,
    min_confidence: float | None = None,
    variable: str | None = None,
    status: str | None = None,
    sort: str = "document",
) -> tuple[dict[str, Any], list[list[Any]]]:
    """The page's index (job, variables, documents, values, initial filters) and, per
    document in index order, its text pieces (see :func:`extraction.review.spans.segment`).

    Every value of the job is included; the options only set the filters the page opens
    with, so a reviewer can widen them without writing the page again.

    Raises:
        NotFoundError: no such job.
        ValidationError: an option out of range or naming no variable/status/sort.
    """
    job_row = get_job(session, job)
    _check_options(session, job_row, min_confidence=min_confidence, variable=variable,
                   status=status, sort=sort)
    project = session.get(Project, job_row.project_id)
    cells = list(session.execute(
        select(Extraction.id, Extraction.document_id, Extraction.variable_id, Extraction.value,
               Extraction.status, Extraction.confidence, Extraction.evidence_quote,
               Extraction.evidence_start, Extraction.evidence_end, Extraction.evidence_page,
               Extraction.grounded, Extraction.support, Extraction.support_reason,
               Extraction.error, Extraction.model, Prompt.version)
        .outerjoin(Prompt, Prompt.id == Extraction.prompt_id)
        .where(Extraction.job_id == job_row.id)))
    variables = list(session.scalars(
        select(Variable).where(Variable.project_id == job_row.project_id,
                               or_(Variable.deleted_at.is_(None),
                                   Variable.id.in_({c.variable_id for c in cells})))
        .order_by(Variable.position, Variable.name)))
    var_index = {v.id: i for i, v in enumerate(variables)}
    docs = _documents(session, job_row, {c.document_id for c in cells})
    doc_index = {d.id: i for i, d in enumerate(docs)}
    verdicts = effective_feedback(session, job_row.project_id, job=job_row) if cells else {}

    cells.sort(key=lambda c: (doc_index[c.document_id], var_index[c.variable_id]))
    values: list[dict[str, Any]] = []
    spans_by_doc: dict[int, list[tuple[int, Any, Any]]] = {}
    for key, c in enumerate(cells):
        d = doc_index[c.document_id]
        verdict = verdicts.get(c.id)
        values.append({
            "id": str(c.id), "doc": d, "var": var_index[c.variable_id],
            "value": _finite(c.value), "shown": _shown(c.status, c.value, c.error),
            "status": c.status.value, "confidence": _confidence(c.confidence),
            "quote": c.evidence_quote, "page": c.evidence_page, "grounded": c.grounded,
            "support": c.support, "support_reason": c.support_reason,
            "drawn": False, "prompt_version": c.version, "model": c.model or job_row.model,
            "saved": None if verdict is None else {
                "is_correct": verdict.is_correct,
                "corrected": format_value(verdict.corrected_value),
                "comment": verdict.comment, "source": verdict.source},
        })
        if c.evidence_start is not None or c.evidence_end is not None:
            spans_by_doc.setdefault(d, []).append((key, c.evidence_start, c.evidence_end))

    documents: list[dict[str, Any]] = []
    texts: list[list[Any]] = []
    for i, d in enumerate(docs):
        text = clean_text(d.text)
        cut = segment(text, spans_by_doc.get(i, ()), d.page_offsets)
        for key in cut.drawn:
            values[key]["drawn"] = True
        texts.append(cut.pieces)
        documents.append({
            "id": str(d.id), "name": d.filename, "chars": len(text),
            "pages": max(d.page_count or 0, len(d.page_offsets or ()), 1),
            "parse_status": d.parse_status.value, "parse_error": d.parse_error,
        })
    data = {
        "format": 1,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "job": {"id": str(job_row.id), "kind": job_row.kind.value,
                "status": job_row.status.value, "model": job_row.model,
                "mode": job_row.mode, "project": project.name if project else "",
                "created_at": job_row.created_at.isoformat() if job_row.created_at else None},
        "variables": [{"name": v.name, "label": v.label, "type": v.type.value,
                       "categories": list(v.categories or []), "allow_other": v.allow_other,
                       "multi_select": v.multi_select, "unit": v.unit}
                      for v in variables],
        "documents": documents,
        "values": values,
        "filters": {"variable": variable, "status": status, "below": min_confidence,
                    "sort": sort},
        "low_confidence": DEFAULT_LOW_CONFIDENCE if min_confidence is None else min_confidence,
        "verdict_format": VERDICT_FORMAT,
        "verdict_source": VERDICT_SOURCE,
    }
    return data, texts


# --------------------------------------------------------------------------- HTML


def _json_block(value: Any) -> Markup:
    """JSON that cannot end its ``<script>`` block or start a comment inside it."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    text = (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    return Markup(text)  # escaped above for the script-data context


def _environment() -> Environment:
    return Environment(loader=PackageLoader("extraction.review", "templates"),
                       autoescape=True, keep_trailing_newline=True)


def _asset(env: Environment, name: str, closing: str) -> str:
    source, _, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
    if closing in source.lower():
        raise AssertionError(f"{name} must not contain '{closing}'")
    return source


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _html(data: dict[str, Any], texts: list[list[Any]]) -> str:
    env = _environment()
    script = _asset(env, "review.js", "</script")
    style = _asset(env, "review.css", "</style")
    job_info = data["job"]
    return env.get_template("review.html.j2").render(
        title=f"Review · {job_info['project']} · {job_info['kind']} job {job_info['id'][:8]}",
        style=Markup(style),  # our own file, checked by _asset
        script=Markup(script),  # our own file, checked by _asset
        script_hash=_csp_hash(script),
        data=_json_block(data),
        texts=[_json_block(pieces) for pieces in texts],
        job=job_info,
        n_documents=len(data["documents"]), n_values=len(data["values"]),
    )


def render_review_page(
    session: Session,
    job: str | uuid.UUID | ProcessingJob,
    *,
    min_confidence: float | None = None,
    variable: str | None = None,
    status: str | None = None,
    sort: str = "document",
) -> str:
    """The review page of ``job`` as one HTML string (see :func:`write_review_page`)."""
    return _html(*build_page_data(session, job, min_confidence=min_confidence,
                                  variable=variable, status=status, sort=sort))


def write_review_page(
    session: Session,
    job: str | uuid.UUID | ProcessingJob,
    path: str | Path,
    *,
    min_confidence: float | None = None,
    variable: str | None = None,
    status: str | None = None,
    sort: str = "document",
) -> PageSummary:
    """Write the review page of ``job`` to ``path`` (replaced atomically).

    Args:
        session: an open session (read only).
        job: the job (id, unique id prefix, or row).
        path: the ``.html`` file to write; parent folders are created.
        min_confidence: values below it count as low-confidence, and the page opens showing
            only those (default threshold :data:`DEFAULT_LOW_CONFIDENCE`, filter off).
        variable: open with only this variable's values shown.
        status: open with only values of this status (``ok``, ``not_found``, ``failed``).
        sort: ``document`` (by file name) or ``confidence`` (least confident first).

    Raises:
        NotFoundError: no such job.
        ValidationError: an option out of range or naming no variable/status/sort.
    """
    data, texts = build_page_data(session, job, min_confidence=min_confidence,
                                  variable=variable, status=status, sort=sort)
    html = _html(data, texts)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".html", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(html)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return PageSummary(path=target, job_id=uuid.UUID(data["job"]["id"]),
                       documents=len(data["documents"]), values=len(data["values"]),
                       drawn=sum(1 for v in data["values"] if v["drawn"]),
                       bytes=len(html.encode("utf-8")))
