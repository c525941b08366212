"""The methods appendix: Markdown with a PNG beside it, or one self-contained HTML file."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from extraction.errors import ValidationError
from extraction.evaluate import evaluate_project, write_report
from tests.evaluate.conftest import Evaluated


def test_markdown_report_states_data_rules_and_results(session: Session, evaluated: Evaluated,
                                                       tmp_path: Path) -> None:
    evaluation = evaluate_project(session, evaluated.project, evaluated.gold)
    files = write_report(evaluation, tmp_path / "out" / "report.md")
    report, png = files
    assert png.name == "report.reliability.png" and png.read_bytes()[:4] == b"\x89PNG"
    text = report.read_text(encoding="utf-8")
    assert "![Reliability diagram](report.reliability.png)" in text
    for expected in (
        "codebook schema version", "gold.csv", "fake-model",
        "a gold 2021-03 matches an extracted 2021-03-14",  # the DATE rule, stated
        "1000\n  resamples, seed 12345", "scikit-learn", "krippendorff",
        "4 gold cell(s) had no extraction", "**No gold** for: sponsor",
        "1200 prompt and 300 completion token(s)",
    ):
        assert expected in text, expected
    row = next(line for line in text.splitlines() if line.startswith("| `phase`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == ["`phase`", "CATEGORY", "6"]
    assert cells[3].startswith("0.500 [") and cells[7:10] == ["1", "1", "1"]
    assert "| 5% (2) | 75.0% | 83.3% |" in text  # review budget: the first row


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.rows = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")
        if tag == "tr":
            self.rows += 1


def test_html_report_embeds_the_diagram(session: Session, evaluated: Evaluated,
                                        tmp_path: Path) -> None:
    evaluation = evaluate_project(session, evaluated.project, evaluated.gold)
    report = write_report(evaluation, tmp_path / "report.html")[0]
    parser = _Collect()
    parser.feed(report.read_text(encoding="utf-8"))
    assert len(parser.images) == 1 and parser.images[0].startswith("data:image/png;base64,")
    assert base64.b64decode(parser.images[0].split(",", 1)[1])[:4] == b"\x89PNG"
    assert parser.rows > 15
    with pytest.raises(ValidationError, match=r"\.md or \.html"):
        write_report(evaluation, tmp_path / "report.pdf")
