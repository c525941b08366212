"""What an export is asked to do (:class:`ExportOptions`), what it did (:class:`ExportResult`)."""

from __future__ import annotations

import enum
import math
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from extraction.errors import ValidationError

__all__ = ["ExportFormat", "ExportOptions", "ExportResult", "default_output_path"]


class ExportFormat(str, enum.Enum):
    CSV_WIDE = "csv-wide"
    CSV_LONG = "csv-long"
    XLSX = "xlsx"
    JSON = "json"
    PARQUET = "parquet"

    @property
    def extension(self) -> str:
        return {"csv-wide": ".csv", "csv-long": ".csv"}.get(self.value, "." + self.value)

    @classmethod
    def parse(cls, value: str | ExportFormat) -> ExportFormat:
        if isinstance(value, ExportFormat):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            choices = ", ".join(f.value for f in cls)
            raise ValidationError(
                f"unknown export format '{value}': choose one of {choices}", field="format"
            ) from None


@dataclass(frozen=True)
class ExportOptions:
    """Everything a user can choose about an export (the same for every format).

    Attributes:
        format: The file format.
        output: The file to write; ``None`` means a new file under ``settings.exports_dir``.
        job_id: Export this job's values only. ``None``: for each document × variable, the value
            from the newest COMPLETE job that has one (see :mod:`extraction.export.query`).
        include_confidence: Add the confidence of each value.
        include_source_text: Add the evidence quote and its page for each value.
        include_document_text: Add each document's full text (large; off by default).
        min_confidence: Values below it (or without a confidence) are blanked and flagged.
        force: Overwrite an existing file.
    """

    format: ExportFormat = ExportFormat.CSV_WIDE
    output: str | Path | None = None
    job_id: str | uuid.UUID | None = None
    include_confidence: bool = False
    include_source_text: bool = False
    include_document_text: bool = False
    min_confidence: float | None = None
    force: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "format", ExportFormat.parse(self.format))
        if self.min_confidence is not None:
            value = self.min_confidence
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or math.isnan(value) or not 0.0 <= value <= 1.0:
                raise ValidationError(
                    f"min_confidence must be a number between 0 and 1, not {value!r}",
                    field="min_confidence",
                )
            object.__setattr__(self, "min_confidence", float(value))
        if self.job_id is not None and not isinstance(self.job_id, uuid.UUID):
            try:
                object.__setattr__(self, "job_id", uuid.UUID(str(self.job_id).strip()))
            except ValueError:
                raise ValidationError(
                    f"'{self.job_id}' is not a job id (a UUID such as "
                    "'3f2b…' from `extractflow job list`)", field="job_id",
                ) from None

    def describe(self) -> dict[str, Any]:
        """The options as plain values, for the run-metadata sheet and the flow artifact."""
        return {
            "format": self.format.value,
            "job_selection": (f"job {self.job_id}" if self.job_id
                              else "newest COMPLETE job per document × variable"),
            "include_confidence": self.include_confidence,
            "include_source_text": self.include_source_text,
            "include_document_text": self.include_document_text,
            "min_confidence": self.min_confidence,
        }


@dataclass
class ExportResult:
    """What was written: the file, its shape, and where the values came from.

    ``rows`` and ``columns`` describe the main table of the file: one row per document for
    csv-wide, xlsx (its data sheet), json and parquet; one row per extraction for csv-long.
    """

    path: Path
    format: ExportFormat
    project: str
    rows: int
    columns: int
    column_names: list[str]
    documents: int
    extractions: int
    flagged: int
    job_ids: list[str]
    options: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["format"] = self.format.value
        return data

    def to_markdown(self) -> str:
        """A short report of the export (the flow leaves it as a Prefect artifact)."""
        unit = "extraction" if self.format is ExportFormat.CSV_LONG else "document"
        options = ", ".join(f"{k}={v}" for k, v in self.options.items()
                            if k not in ("format", "job_selection") and v not in (None, False))
        rows = [
            ("File", f"[{self.path}]({self.path.as_uri()})"),
            ("Format", self.format.value),
            ("Rows", f"{self.rows} (one per {unit})"),
            ("Columns", str(self.columns)),
            ("Documents", str(self.documents)),
            ("Extractions", str(self.extractions)),
            ("Flagged below min_confidence", str(self.flagged)),
            ("Values from", self.options.get("job_selection", "")),
            ("Jobs", ", ".join(f"`{j}`" for j in self.job_ids)),
            ("Options", options or "none"),
            ("Seconds", f"{self.seconds:.2f}"),
        ]
        escaped = [(k, v.replace("|", "\\|")) for k, v in rows]
        table = "\n".join(f"| {k} | {v} |" for k, v in escaped)
        return f"# Export of `{self.project}`\n\n| | |\n|---|---|\n{table}\n"


_SLUG_RE = re.compile(r"[^a-z0-9]+")


def default_output_path(exports_dir: Path, project_name: str, fmt: ExportFormat,
                        now: datetime) -> Path:
    """A new file name under ``exports_dir``: ``<project>-<format>-<UTC time>.<ext>``."""
    slug = _SLUG_RE.sub("-", project_name.lower()).strip("-") or "project"
    stem = f"{slug}-{fmt.value}-{now:%Y%m%dT%H%M%SZ}"
    candidate = exports_dir / (stem + fmt.extension)
    n = 1
    while candidate.exists():
        n += 1
        candidate = exports_dir / f"{stem}-{n}{fmt.extension}"
    return candidate
