"""The methods appendix: an :class:`~extraction.evaluate.service.Evaluation` as Markdown or HTML.

Written to be pasted into a paper's supplement: what was evaluated (project, codebook
version, models, prompt versions, mode, dates, documents and cells), how (matching rules,
definitions, libraries, bootstrap), the tables with their intervals, calibration with a
reliability diagram, the review budget, and cost and tokens. The templates are Jinja2 files
beside this module (``templates/report.md.j2`` and ``report.html.j2``).

The diagram is a PNG beside a Markdown report (``<report>.reliability.png``, linked by a
relative path) and embedded in an HTML report as a data URI, so the HTML is one file.
"""

from __future__ import annotations

import base64
from datetime import datetime
from pathlib import Path
from typing import Any

from extraction.errors import ValidationError
from extraction.evaluate.calibration import write_reliability_png
from extraction.evaluate.service import Evaluation, Interval

__all__ = ["MAX_PROBLEMS", "png_path_for", "render", "write_report"]

#: Gold problems listed in a report (``--json`` has all of them).
MAX_PROBLEMS = 50
_TEMPLATES = Path(__file__).with_name("templates")


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _ci(interval: Interval | None) -> str:
    if interval is None or interval.value is None:
        return "–"
    if interval.low is None or interval.high is None:
        return f"{interval.value:.3f}"
    return f"{interval.value:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value[:16].replace("T", " ")
    return value.strftime("%Y-%m-%d %H:%M")


def _money(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=lambda name: bool(name) and name.endswith(".html.j2"),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(num=_num, pct=_pct, ci=_ci, when=_when, money=_money)
    return env


def _context(evaluation: Evaluation, image: str | None) -> dict[str, Any]:
    jobs = evaluation.jobs
    costs = [j["cost_usd"] for j in jobs if j.get("cost_usd") is not None]
    source = evaluation.gold.source
    return {
        "e": evaluation,
        "image": image,
        "gold_source": ("the reviewed cells (feedback)" if evaluation.gold.shape == "feedback"
                        else f"`{Path(source).name}`"),
        "models": sorted({j["model"] for j in jobs if j.get("model")}),
        "modes": sorted({j["mode"] for j in jobs if j.get("mode")}),
        "not_extracted": sum(v.not_extracted for v in evaluation.variables),
        "no_gold": [v.name for v in evaluation.variables if v.gold_cells == 0],
        "text_f1": [v for v in evaluation.variables if v.mean_token_f1 is not None],
        "tokens_in": sum(j.get("tokens_in") or 0 for j in jobs),
        "tokens_out": sum(j.get("tokens_out") or 0 for j in jobs),
        "cost": sum(costs) if costs else None,
        "max_problems": MAX_PROBLEMS,
    }


def render(evaluation: Evaluation, *, html: bool = False, image: str | None = None) -> str:
    """The report as Markdown (or HTML); ``image`` is the diagram's link or data URI."""
    context = _context(evaluation, image)
    if html:
        context["gold_source"] = context["gold_source"].strip("`")
    name = "report.html.j2" if html else "report.md.j2"
    return _environment().get_template(name).render(**context)


def png_path_for(report: Path) -> Path:
    """Where the reliability diagram of ``report`` goes: beside it."""
    return report.with_name(f"{report.stem}.reliability.png")


def write_report(evaluation: Evaluation, path: Path) -> list[Path]:
    """Write the report (``.md`` or ``.html``) and its diagram; returns the files written.

    Raises:
        ValidationError: an extension other than .md / .markdown / .html / .htm.
    """
    suffix = path.suffix.lower()
    if suffix not in (".md", ".markdown", ".html", ".htm"):
        raise ValidationError(f"a report is .md or .html, not '{path.suffix or path.name}'",
                              field="out", instance=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    image = None
    if evaluation.calibration.cells:
        png = write_reliability_png(evaluation.calibration, png_path_for(path),
                                    title=f"Reliability: {evaluation.project}")
        written.append(png)
        if suffix in (".html", ".htm"):
            image = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
        else:
            image = png.name
    html = suffix in (".html", ".htm")
    path.write_text(render(evaluation, html=html, image=image), encoding="utf-8")
    return [path, *written]
