"""Verdict files of the review page (JSON, CSV): imported row by row, each refusal explained."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from extraction.errors import ValidationError
from extraction.models import ExtractionFeedback
from extraction.review import feedback
from extraction.review.scorecard import build_scorecard
from extraction.review.verdict_files import CSV_COLUMNS, FORMAT, SOURCE, import_verdict_file
from testing.review_factory import add_job, make_sample
from tests.cli_helpers import run_cli


def _json_file(path: Path, job_id: Any, verdicts: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"format": FORMAT, "version": 1, "job_id": str(job_id),
                                "verdicts": verdicts}), encoding="utf-8")
    return path


def _stored(session: Session) -> dict[str, ExtractionFeedback]:
    return {str(fb.extraction_id): fb for fb in session.scalars(select(ExtractionFeedback))}


def test_json_verdicts_become_feedback_that_the_scorecard_counts(session: Session,
                                                                  tmp_path: Path) -> None:
    s = make_sample(session)
    c = s.cells
    path = _json_file(tmp_path / "v.json", s.job.id, [
        {"extraction_id": str(c[(0, "phase")].id), "is_correct": False,
         "corrected_value": "phase 3", "comment": "says phase III"},
        {"extraction_id": str(c[(1, "phase")].id), "is_correct": True, "corrected_value": None},
        {"extraction_id": str(c[(2, "enrollment")].id), "is_correct": False,
         "corrected_value": None, "comment": "not stated"},
    ])
    report = import_verdict_file(session, path)
    session.commit()
    assert (report.created, report.updated, report.unchanged, report.problems) == (3, 0, 0, [])
    stored = _stored(session)
    fix = stored[str(c[(0, "phase")].id)]
    assert (fix.is_correct, fix.corrected_value, fix.comment, fix.source) == (
        False, "Phase 3", "says phase III", SOURCE)
    assert stored[str(c[(2, "enrollment")].id)].corrected_value is None
    card = build_scorecard(session, "trials")
    phase = next(v for v in card.versions if v.variable == "phase")
    assert (phase.reviewed, phase.checked, phase.correct) == (2, 2, 1)
    again = import_verdict_file(session, path)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)


def test_bad_rows_are_explained_one_by_one_and_the_good_ones_imported(
    session: Session, tmp_path: Path,
) -> None:
    s = make_sample(session)
    c = dict(s.cells)
    other = add_job(session, s, {(0, "sponsor"): "Acme"})
    session.commit()
    good = str(c[(0, "sponsor")].id)
    path = _json_file(tmp_path / "v.json", s.job.id, [
        {"extraction_id": good, "is_correct": False, "corrected_value": "Acme Ltd"},
        {"extraction_id": "00000000-0000-0000-0000-000000000001", "is_correct": True},
        {"extraction_id": "not-an-id", "is_correct": True},
        {"extraction_id": str(c[(0, "enrollment")].id), "is_correct": False,
         "corrected_value": "lots", "document": "doc0.txt",
         "variable": "enrollment"},
        {"extraction_id": str(c[(1, "phase")].id), "is_correct": "maybe"},
        {"extraction_id": str(c[(1, "randomised")].id), "is_correct": False,
         "corrected_value": True},
        {"extraction_id": good, "is_correct": True},
        {"extraction_id": str(s.cells[(0, "sponsor")].id), "is_correct": True},  # other job
        "not an object",
    ])

    report = import_verdict_file(session, path)
    session.commit()
    assert report.created == 1 and list(_stored(session)) == [good]
    messages = {p.row: p.message for p in report.problems}
    assert sorted(messages) == [2, 3, 4, 5, 6, 7, 8, 9]
    assert "no extraction 00000000-0000-0000-0000-000000000001 in this database" in messages[2]
    assert "'not-an-id' is not an extraction id" in messages[3]
    assert "not a valid value for NUMBER variable 'enrollment'" in messages[4]
    assert "'maybe' is not a verdict" in messages[5]
    assert "is what was extracted; mark it correct instead" in messages[6]
    assert "already has a verdict on row 1" in messages[7]
    assert f"belongs to job {other.id}, not to job {s.job.id}" in messages[8]
    assert "no extraction id" in messages[9]
    assert next(p for p in report.problems if p.row == 4).label == "doc0.txt / enrollment"


def test_csv_from_the_page_round_trips_and_formula_quotes_are_dropped(
    session: Session, tmp_path: Path,
) -> None:
    s = make_sample(session)
    c = s.cells
    path = tmp_path / "v.csv"
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        w.writerow([c[(0, "enrollment")].id, s.job.id, "doc0.txt", "enrollment", "100", "no",
                    "'-5", "'=typo in the table"])
        w.writerow([c[(0, "sponsor")].id, s.job.id, "doc0.txt", "sponsor", "Acme 0", "yes", "",
                    ""])
        w.writerow([c[(1, "sponsor")].id, s.job.id, "doc1.txt", "sponsor", "Acme 1", "", "",
                    "a comment and no verdict"])
    report = import_verdict_file(session, path)
    session.commit()
    assert (report.created, len(report.problems)) == (2, 1)
    assert report.problems[0].row == 4 and "no verdict" in report.problems[0].message
    fix = _stored(session)[str(c[(0, "enrollment")].id)]
    assert (fix.corrected_value, fix.comment) == (-5.0, "=typo in the table")


def test_a_file_that_is_not_a_page_export_is_refused_whole(session: Session,
                                                           tmp_path: Path) -> None:
    make_sample(session)
    cases = {
        "missing.json": None,
        "broken.json": "{not json",
        "other.json": json.dumps({"verdicts": []}),
        "shape.json": json.dumps({"format": FORMAT, "verdicts": {}}),
        "headers.csv": "id,verdict\n1,yes\n",
        "latin1.csv": b"extraction_id,correct\n" + b"caf\xe9,yes\n",
    }
    for name, content in cases.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            path.write_text(content)
        with pytest.raises(ValidationError) as err:
            import_verdict_file(session, path)
        assert err.value.field == "path", name
    with pytest.raises(ValidationError, match="lacks extraction_id, correct"):
        import_verdict_file(session, tmp_path / "headers.csv")


def test_cli_import_reports_each_refused_row_and_keeps_the_valid_ones(
    db_url: str, tmp_path: Path,
) -> None:
    from extraction.db import open_session

    with open_session(db_url) as session:
        s = make_sample(session)
        good, job_id = str(s.cells[(0, "phase")].id), str(s.job.id)
    path = _json_file(tmp_path / "v.json", job_id, [
        {"extraction_id": good, "is_correct": False, "corrected_value": "Phase 1",
         "document": "doc0.txt", "variable": "phase"},
        {"extraction_id": "00000000-0000-0000-0000-000000000002", "is_correct": True,
         "document": "gone.txt", "variable": "phase"},
    ])
    result = run_cli("review", "import", str(path))
    assert result.exit_code == 1
    assert "1 new" in result.stdout and "1 row(s) refused" in result.stdout
    assert "row 2 (gone.txt / phase): no extraction" in result.stderr
    as_json = run_cli("review", "import", str(path), "--json")
    assert as_json.json()["unchanged"] == 1 and as_json.json()["problems"][0]["row"] == 2
    other_job = run_cli("review", "import", str(path), "--job", "0123456789ab", "--json")
    assert other_job.json()["refused"] == 2
    with open_session(db_url) as session:
        views = feedback.list_feedback(session, "trials")
        assert [(v.variable, v.corrected_value, v.source) for v in views] == [
            ("phase", "Phase 1", SOURCE)]
