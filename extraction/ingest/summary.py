"""What an ingest did, per chunk and in total, as plain values (printable, JSON-ready).

Counting rules: every discovered file is counted exactly once, as one of *ok*, *empty*,
*failed* or *duplicate*; so ``ok + empty + failed + duplicates == files_done``, and every
file counted ok, empty or failed got a new row (``added``). A path whose earlier ingest left
a failed or empty row that the new file supersedes has that row deleted (``replaced``; see
`extraction.ingest.store`): an unreadable file ingested twice is counted failed both times —
the user must see that it still fails — but keeps one row. *Pages* are pages of text of the
documents added as ok (a PDF's pages; a DOCX or text file has one). *Bytes* are the sizes
of all files seen, duplicates included.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Final

from extraction.documents import format_size

__all__ = ["ChunkOutcome", "DuplicateFile", "FileProblem", "IngestSummary"]

_MARKDOWN_ROWS: Final = 50


@dataclass(frozen=True)
class FileProblem:
    """A file that became a failed or empty document, and why (plain words)."""

    filename: str
    source_path: str | None
    status: str  # "failed" or "empty"
    reason: str


@dataclass(frozen=True)
class DuplicateFile:
    """A file skipped because the project already holds (or this batch adds) its content."""

    filename: str
    source_path: str | None
    duplicate_of: str  # filename of the document that has the same content


@dataclass(kw_only=True)
class _FileCounts:
    """The counters a stored chunk and a whole ingest share (summed by `IngestSummary.add`)."""

    added: int = 0
    ok: int = 0
    empty: int = 0
    failed: int = 0
    pages: int = 0
    bytes: int = 0
    replaced: int = 0
    problems: list[FileProblem] = field(default_factory=list)
    duplicates: list[DuplicateFile] = field(default_factory=list)


@dataclass(kw_only=True)
class ChunkOutcome(_FileCounts):
    """What storing one chunk of parsed files did."""

    files: int = 0


@dataclass(kw_only=True)
class IngestSummary(_FileCounts):
    """Totals of one ingest, built chunk by chunk with `add`."""

    project: str
    files_seen: int = 0
    files_done: int = 0
    seconds: float = 0.0

    @property
    def duplicate_count(self) -> int:
        return len(self.duplicates)

    def add(self, outcome: ChunkOutcome) -> None:
        """Fold one stored chunk into the totals."""
        self.files_done += outcome.files
        self.added += outcome.added
        self.ok += outcome.ok
        self.empty += outcome.empty
        self.failed += outcome.failed
        self.pages += outcome.pages
        self.bytes += outcome.bytes
        self.replaced += outcome.replaced
        self.problems.extend(outcome.problems)
        self.duplicates.extend(outcome.duplicates)

    def headline(self) -> str:
        """One sentence for a terminal or a log line."""
        parts = [f"{self.ok} parsed", f"{self.empty} empty", f"{self.failed} failed",
                 f"{self.duplicate_count} duplicates skipped"]
        return (f"{self.files_done} of {self.files_seen} files into '{self.project}': "
                + ", ".join(parts) + f"; {self.pages} pages, {format_size(self.bytes)}"
                + (f" in {self.seconds:.1f} s" if self.seconds else ""))

    def counts(self) -> list[tuple[str, str]]:
        """The figures as (label, value) rows, in reading order."""
        return [
            ("Files seen", str(self.files_seen)),
            ("Parsed (ok)", str(self.ok)),
            ("Empty (no text)", str(self.empty)),
            ("Failed", str(self.failed)),
            ("Duplicates skipped", str(self.duplicate_count)),
            ("New documents", str(self.added)),
            ("Earlier failures replaced", str(self.replaced)),
            ("Pages of text", str(self.pages)),
            ("Bytes read", format_size(self.bytes)),
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready totals with every problem and duplicate listed."""
        return {
            "project": self.project,
            "files_seen": self.files_seen,
            "files_done": self.files_done,
            "ok": self.ok,
            "empty": self.empty,
            "failed": self.failed,
            "duplicates": self.duplicate_count,
            "added": self.added,
            "replaced": self.replaced,
            "pages": self.pages,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "problems": [asdict(p) for p in self.problems],
            "duplicate_files": [asdict(d) for d in self.duplicates],
        }

    def to_markdown(self, max_rows: int = _MARKDOWN_ROWS) -> str:
        """A report for a Prefect artifact: the figures, then each failed or empty file."""
        lines = [f"# Ingest into `{_cell(self.project)}`", "", "| | |", "|---|---|"]
        lines += [f"| {label} | {value} |" for label, value in self.counts()]
        if self.problems:
            lines += ["", f"## Failed and empty files ({len(self.problems)})", "",
                      "| File | Status | Reason |", "|---|---|---|"]
            for problem in self.problems[:max_rows]:
                lines.append(f"| {_cell(problem.filename)} | {problem.status} | "
                             f"{_cell(problem.reason)} |")
            if len(self.problems) > max_rows:
                lines += ["", f"…and {len(self.problems) - max_rows} more: "
                              f"`extractflow docs list {self.project} --status failed`"]
        if self.duplicates:
            shown = self.duplicates[:max_rows]
            lines += ["", f"## Duplicates skipped ({len(self.duplicates)})", "",
                      "| File | Same content as |", "|---|---|"]
            lines += [f"| {_cell(d.filename)} | {_cell(d.duplicate_of)} |" for d in shown]
            if len(self.duplicates) > max_rows:
                lines.append(f"\n…and {len(self.duplicates) - max_rows} more")
        return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """Make text safe inside a Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
