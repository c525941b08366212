"""The review page as written to disk: data, escaping, bad input, options and the CLI.

What the page does in a browser is tested in test_review_page_browser.py; here the file
itself is read back (its embedded JSON blocks are parsed as the page's script parses them).
"""

from __future__ import annotations

import html as html_lib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text as text_sql
from sqlalchemy.orm import Session

from extraction.errors import NotFoundError, ValidationError
from extraction.models import Document, JobKind, ParseStatus, ProcessingJob
from extraction.review import feedback
from extraction.review.page import render_review_page, write_review_page
from testing.review_factory import make_sample
from tests.cli_helpers import run_cli

EVIL = '<script>alert(1)</script><img src=x onerror="alert(2)"> & </script><!--'


def _blocks(html: str) -> tuple[dict[str, Any], list[list[Any]]]:
    """The page's data block and document blocks, parsed like the page's script does."""
    data = re.search(r'<script type="application/json" id="review-data">(.*?)</script>',
                     html, re.DOTALL)
    assert data is not None
    texts = re.findall(r'<script type="application/json" class="doc-text" id="doc-\d+">'
                       r"(.*?)</script>", html, re.DOTALL)
    return json.loads(data.group(1)), [json.loads(t) for t in texts]


def _ground(cell: Any, document: Document, quote: str, nth: int = 0) -> None:
    start = -1
    for _ in range(nth + 1):
        start = document.text.index(quote, start + 1)
    cell.evidence_quote, cell.evidence_start, cell.evidence_end = quote, start, start + len(quote)
    cell.grounded = True


def test_each_value_carries_what_a_reviewer_checks(session: Session) -> None:
    s = make_sample(session)
    _ground(s.cells[(0, "sponsor")], s.documents[0], "Acme 0")
    feedback.record_feedback(session, s.cells[(0, "phase")].id, is_correct=True)
    session.commit()
    data, texts = _blocks(render_review_page(session, s.job.id))
    assert data["job"]["id"] == str(s.job.id) and data["job"]["project"] == "trials"
    assert [d["name"] for d in data["documents"]] == ["doc0.txt", "doc1.txt", "doc2.txt"]
    assert [v["name"] for v in data["variables"]] == [
        "sponsor", "phase", "enrollment", "start_date", "randomised"]
    by = {(v["doc"], data["variables"][v["var"]]["name"]): v for v in data["values"]}
    sponsor = by[(0, "sponsor")]
    assert (sponsor["shown"], sponsor["status"], sponsor["confidence"],
            sponsor["prompt_version"], sponsor["model"], sponsor["drawn"]) == (
        "Acme 0", "ok", 0.9, 1, "fake-model", True)
    assert by[(0, "enrollment")]["shown"] == "100" and by[(0, "randomised")]["shown"] == "true"
    assert by[(0, "phase")]["saved"] == {"is_correct": True, "corrected": "", "comment": "",
                                         "source": "cli"}
    key = data["values"].index(sponsor)
    marked = [p[0] for p in texts[0] if isinstance(p, list) and len(p) > 1 and key in p[1]]
    assert marked == ["Acme 0"]
    assert "".join(p[0] for p in texts[0] if isinstance(p, list)) == s.documents[0].text


def test_document_html_and_script_is_data_never_markup(session: Session) -> None:
    s = make_sample(session)
    doc = s.documents[1]
    doc.text = f"Before {EVIL} after. Sponsor: Acme 1."
    doc.filename = '<b onmouseover="alert(3)">evil</b>.txt'
    s.cells[(1, "sponsor")].value = "</script><script>alert(4)</script>"
    _ground(s.cells[(1, "sponsor")], doc, "Acme 1")
    session.commit()
    html = render_review_page(session, s.job.id)
    # the only executable script is the page's own; no document text appears unescaped
    assert len(re.findall(r"<script>", html)) == 1
    for needle in ("alert(1)</script>", "<img", "<!--", "<b onmouseover", "</script><script>"):
        assert needle not in html, needle
    data, texts = _blocks(html)
    index = [d["name"] for d in data["documents"]].index(doc.filename)
    assert "".join(p[0] for p in texts[index] if isinstance(p, list)) == doc.text
    assert any(v["shown"] == "</script><script>alert(4)</script>" for v in data["values"])
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert csp is not None
    policy = html_lib.unescape(csp.group(1))
    assert "default-src 'none'" in policy and "script-src 'sha256-" in policy
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]


def test_offsets_outside_the_text_and_overlaps_still_render(session: Session) -> None:
    s = make_sample(session)
    doc = s.documents[0]
    outside = s.cells[(0, "sponsor")]
    outside.evidence_start, outside.evidence_end, outside.grounded = 10, 10_000, True
    reversed_ = s.cells[(0, "phase")]
    reversed_.evidence_start, reversed_.evidence_end, reversed_.grounded = 30, 20, True
    _ground(s.cells[(0, "enrollment")], doc, "Enrolled 100 participants")
    _ground(s.cells[(0, "start_date")], doc, "100 participants")  # inside the one above
    ungrounded = s.cells[(0, "randomised")]
    ungrounded.grounded, ungrounded.evidence_quote = False, "never said"
    session.commit()
    data, texts = _blocks(render_review_page(session, s.job.id))
    drawn = {data["variables"][v["var"]]["name"]: v["drawn"]
             for v in data["values"] if v["doc"] == 0}
    assert drawn == {"sponsor": False, "phase": False, "enrollment": True, "start_date": True,
                     "randomised": False}
    assert any(isinstance(p, list) and len(p) > 1 and len(p[1]) == 2 for p in texts[0])
    assert "".join(p[0] for p in texts[0] if isinstance(p, list)) == doc.text


def test_a_job_without_extractions_renders_an_empty_page(session: Session, tmp_path: Path) -> None:
    s = make_sample(session)
    empty = ProcessingJob(project_id=s.project.id, kind=JobKind.FULL, prompt_snapshot={},
                          document_ids=[str(s.documents[0].id), "not-a-uuid"])
    session.add(empty)
    session.commit()
    out = write_review_page(session, empty.id, tmp_path / "deep" / "empty.html")
    assert (out.documents, out.values, out.drawn) == (1, 0, 0)
    data, _ = _blocks(out.path.read_text(encoding="utf-8"))
    assert data["values"] == [] and data["documents"][0]["name"] == "doc0.txt"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # PostgreSQL stores only UTF-8
def test_text_stored_as_bytes_that_are_not_utf8_still_renders(session: Session,
                                                             tmp_path: Path) -> None:
    s = make_sample(session)
    session.add(Document(project_id=s.project.id, filename="broken.pdf", text=None,
                         parse_status=ParseStatus.FAILED, parse_error="not a PDF"))
    session.execute(text_sql("UPDATE documents SET text = CAST(X'636166E920416D65' AS TEXT) "
                             "WHERE id = :id"), {"id": s.documents[2].id.hex})
    session.commit()
    out = write_review_page(session, s.job.id, tmp_path / "r.html")
    _, texts = _blocks(out.path.read_text(encoding="utf-8"))
    assert "".join(p[0] for p in texts[2] if isinstance(p, list)) == "caf\ufffd Ame"


def test_options_set_the_opening_filters_and_bad_ones_are_refused(session: Session) -> None:
    s = make_sample(session)
    data, _ = _blocks(render_review_page(session, s.job.id, min_confidence=0.8,
                                         variable="phase", status="ok", sort="confidence"))
    assert data["filters"] == {"variable": "phase", "status": "ok", "below": 0.8,
                               "sort": "confidence"}
    assert data["low_confidence"] == 0.8 and len(data["values"]) == 15  # nothing left out
    with pytest.raises(ValidationError, match="no variable 'colour'.*sponsor, phase"):
        render_review_page(session, s.job.id, variable="colour")
    with pytest.raises(ValidationError, match="unknown status 'done'"):
        render_review_page(session, s.job.id, status="done")
    with pytest.raises(ValidationError, match="between 0 and 1"):
        render_review_page(session, s.job.id, min_confidence=1.5)
    with pytest.raises(ValidationError, match="unknown sort"):
        render_review_page(session, s.job.id, sort="size")
    with pytest.raises(NotFoundError):
        render_review_page(session, "00000000-0000-0000-0000-000000000000")


def test_cli_writes_the_page_and_says_where(db_url: str, tmp_path: Path) -> None:
    from extraction.db import open_session

    with open_session(db_url) as s:
        job_id = str(make_sample(s).job.id)
    target = tmp_path / "out" / "review.html"
    result = run_cli("review", "html", job_id[:8], "-o", str(target), "--sort", "confidence",
                     "--min-confidence", "0.95")
    assert result.exit_code == 0, result.stderr
    assert str(target.resolve()) in result.stdout and "15 value(s)" in result.stdout
    data, _ = _blocks(target.read_text(encoding="utf-8"))
    assert data["filters"]["sort"] == "confidence"
    as_json = run_cli("review", "html", job_id, "-o", str(target), "--json").json()
    assert as_json["values"] == 15 and as_json["documents"] == 3
    bad = run_cli("review", "html", job_id, "-o", str(target), "--variable", "nope", "--json")
    assert bad.exit_code != 0 and bad.json()["error"]["field"] == "variable"


def test_the_run_summary_artifact_names_the_command_that_writes_the_page(
    session: Session,
) -> None:
    from extraction.run.summary import summary_markdown

    s = make_sample(session)
    assert f"`extractflow review html {s.job.id} -o review-{str(s.job.id)[:8]}.html`" in \
        summary_markdown(s.job)


def test_a_value_its_quote_does_not_state_is_flagged_unsupported(session: Session) -> None:
    s = make_sample(session)
    cell = s.cells[(0, "enrollment")]
    cell.support, cell.support_reason = "unsupported", "the quote states 356, not 363"
    session.commit()
    html = render_review_page(session, s.job.id)
    data, _ = _blocks(html)
    by = {(v["doc"], data["variables"][v["var"]]["name"]): v for v in data["values"]}
    assert (by[(0, "enrollment")]["support"], by[(0, "enrollment")]["support_reason"]) == (
        "unsupported", "the quote states 356, not 363")
    assert by[(0, "phase")]["support"] is None
    assert 'class: "tag unsupported"' in html
