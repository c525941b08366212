"""The scorecard: accuracy per prompt version and the latest sample checked against feedback."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.orm import Session

from extraction.errors import NotFoundError
from extraction.models import JobStatus
from extraction.review import feedback
from extraction.review.scorecard import build_scorecard, scorecard_markdown, scorecard_to_dict
from testing.review_factory import add_job, add_prompt_version, make_sample


def _review_first_run(session: Session):  # type: ignore[no-untyped-def]
    s = make_sample(session)
    c = s.cells
    feedback.record_feedback(session, c[(0, "phase")].id, is_correct=False,
                             corrected_value="Phase 1", comment="says phase I")
    feedback.record_feedback(session, c[(1, "phase")].id, is_correct=False,
                             corrected_value="Phase 3")
    feedback.record_feedback(session, c[(2, "phase")].id, is_correct=True)
    feedback.record_feedback(session, c[(0, "enrollment")].id, is_correct=True)
    session.commit()
    return s


def _score(card, variable: str, version: int):  # type: ignore[no-untyped-def]
    return next(v for v in card.versions if v.variable == variable and v.version == version)


def test_a_refined_version_is_scored_on_the_documents_reviewed_under_its_parent(
    session: Session,
) -> None:
    s = _review_first_run(session)
    before = build_scorecard(session, "trials")
    v1 = _score(before, "phase", 1)
    assert (v1.cells, v1.reviewed, v1.checked, v1.correct) == (3, 3, 3, 1)
    assert v1.accuracy == pytest.approx(1 / 3) and v1.is_current
    assert before.latest is not None and before.latest.cells == []  # nothing re-run yet

    add_prompt_version(session, s.variables["phase"], "Phase, refined")
    add_job(session, s, {(0, "phase"): "Phase 1", (1, "phase"): "Phase 2",
                         (2, "phase"): "Phase 2", (0, "enrollment"): 100,
                         (0, "sponsor"): "Acme 0"})
    session.commit()

    card = build_scorecard(session, s.project.id)
    v1, v2 = _score(card, "phase", 1), _score(card, "phase", 2)
    assert not v1.is_current and v2.is_current and v2.origin == "refined"
    assert (v2.cells, v2.reviewed, v2.checked, v2.correct) == (3, 0, 3, 2)
    enrol = _score(card, "enrollment", 1)
    assert (enrol.cells, enrol.reviewed, enrol.checked, enrol.correct) == (3, 1, 1, 1)
    assert _score(card, "sponsor", 1).checked == 0

    latest = card.latest
    assert latest is not None and latest.job_id == s.jobs[1].id
    outcomes = {(c.filename, c.variable): c for c in latest.cells}
    assert {k: c.outcome for k, c in outcomes.items()} == {
        ("doc0.txt", "phase"): "fixed", ("doc1.txt", "phase"): "still_wrong",
        ("doc2.txt", "phase"): "kept", ("doc0.txt", "enrollment"): "kept"}
    fixed = outcomes[("doc0.txt", "phase")]
    assert (fixed.old_value, fixed.right_value, fixed.new_value) == ("Phase 2", "Phase 1",
                                                                     "Phase 1")
    assert (fixed.old_version, fixed.new_version) == (1, 2)
    assert fixed.comment == "says phase I"
    assert latest.counts("phase") == {"fixed": 1, "still_wrong": 1, "kept": 1, "broken": 0,
                                      "failed": 0}

    data = scorecard_to_dict(card)
    assert data["latest_sample"]["counts"]["fixed"] == 1
    assert {(v["variable"], v["version"]) for v in data["versions"]} >= {("phase", 1),
                                                                         ("phase", 2)}
    md = scorecard_markdown(card)
    assert "| phase | v2 | refined | yes | 3 | 0 | 3 | 67% (2/3) |" in md
    assert "| doc0.txt | phase | corrected | Phase 2 | Phase 1 | Phase 1 | v1 → v2 | fixed |" in md


def test_broken_and_failed_cells_and_explicit_job(session: Session) -> None:
    s = _review_first_run(session)
    add_job(session, s, {(2, "phase"): "Phase 3", (0, "phase"): "FAILED"})
    session.commit()
    card = build_scorecard(session, "trials")
    assert {c.outcome for c in card.latest.cells} == {"broken", "failed"}
    # Judging the reviewed run itself compares nothing: its verdicts are excluded.
    first = build_scorecard(session, "trials", job=s.jobs[0].id)
    assert first.latest.job_id == s.jobs[0].id and first.latest.cells == []
    with pytest.raises(NotFoundError):
        build_scorecard(session, "trials", job=uuid.uuid4())


def test_the_newest_verdict_on_a_cell_counts(session: Session) -> None:
    s = _review_first_run(session)
    # A second reviewer changes their mind in the workbook: doc1's phase was right after all.
    feedback.record_feedback(session, s.cells[(1, "phase")].id, is_correct=True,
                             source="workbook")
    session.commit()
    card = build_scorecard(session, "trials")
    v1 = _score(card, "phase", 1)
    assert (v1.reviewed, v1.correct) == (3, 2)
    assert card.reviewed == 4


def test_pending_jobs_are_not_the_latest_sample_and_no_feedback_is_fine(session: Session) -> None:
    s = make_sample(session)
    card = build_scorecard(session, "trials")
    assert card.reviewed == 0 and all(v.checked == 0 for v in card.versions)
    assert card.latest.job_id == s.job.id
    add_job(session, s, {(0, "phase"): "Phase 1"}, status=JobStatus.PENDING)
    session.commit()
    assert build_scorecard(session, "trials").latest.job_id == s.job.id
    assert "nothing to compare" in scorecard_markdown(card)


def test_sample_artifact_only_when_there_is_feedback(session: Session) -> None:
    from extraction.models import JobKind
    from extraction.review.scorecard import sample_scorecard_markdown

    s = make_sample(session)
    assert sample_scorecard_markdown(session, s.job.id) is None
    feedback.record_feedback(session, s.cells[(0, "phase")].id, is_correct=False,
                             corrected_value="Phase 1")
    add_prompt_version(session, s.variables["phase"], "Phase, refined")
    rerun = add_job(session, s, {(0, "phase"): "Phase 1"})
    full = add_job(session, s, {(0, "phase"): "Phase 1"}, kind=JobKind.FULL)
    session.commit()
    md = sample_scorecard_markdown(session, rerun.id)
    assert md is not None and f"## Latest sample run {rerun.id}" in md
    assert "1 fixed" in md
    assert sample_scorecard_markdown(session, full.id) is None
