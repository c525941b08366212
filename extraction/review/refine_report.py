"""What a refinement did, for people and programs: the report, as JSON and as Markdown."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from extraction.review.refine_store import RefinementResult

__all__ = ["RefinementReport", "report_markdown", "report_to_dict"]


@dataclass
class RefinementReport:
    project: str
    dry_run: bool
    results: list[RefinementResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # variables without pending corrections
    #: Documents whose reviewed cells were held out to check the rewrites (not learned from).
    held_out_documents: list[str] = field(default_factory=list)

    @property
    def refined(self) -> list[RefinementResult]:
        return [r for r in self.results if r.ok]

    @property
    def failed(self) -> list[RefinementResult]:
        return [r for r in self.results if not r.ok]



def report_to_dict(report: RefinementReport) -> dict[str, Any]:
    """A JSON-ready report (what ``prompt refine --json`` prints)."""
    return {
        "project": report.project,
        "dry_run": report.dry_run,
        "skipped": report.skipped,
        "results": [
            {"variable": r.variable, "from_version": r.from_version, "to_version": r.to_version,
             "prompt_id": str(r.prompt_id) if r.prompt_id else None,
             "corrections": r.corrections, "examples_total": r.examples_total,
             "examples_shown": r.examples_shown, "rationale": r.rationale, "diff": r.diff,
             "error": r.error, "forced": r.forced,
             "held_out": r.held_out.to_dict() if r.held_out is not None else None}
            for r in report.results
        ],
        "held_out_documents": report.held_out_documents,
    }


def report_markdown(report: RefinementReport) -> str:
    """The report as Markdown (the refine_prompts flow's artifact)."""
    verb = "Proposed" if report.dry_run else "Refined"
    lines = [f"# {verb} prompts: {report.project}", ""]
    if not report.results:
        lines.append("No variable has corrections that are not yet learned from: nothing to "
                     "refine.")
    for r in report.results:
        if r.error:
            lines += [f"## {r.variable}: not refined", "", f"{r.error}", ""]
            continue
        lines += [f"## {r.variable}: v{r.from_version} → v{r.to_version}", "",
                  f"{r.rationale}", "",
                  *([f"{r.held_out.describe()}" + (" (kept with --force)" if r.forced else ""),
                     ""] if r.held_out is not None else []),
                  (f"{r.corrections} correction(s); worked examples: {r.examples_shown} shown "
                   f"of {r.examples_total}."), "", "```diff", r.diff, "```", ""]
    if report.skipped:
        lines.append(f"Left as they are (no new corrections): {', '.join(report.skipped)}.")
    return "\n".join(lines) + "\n"
