"""Recording and listing feedback: typed corrections, idempotency, bad inputs."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from extraction.errors import NotFoundError, ValidationError
from extraction.models import ExtractionFeedback
from extraction.review import corrections, feedback
from testing.review_factory import add_job, add_prompt_version, make_sample


def _count(session: Session) -> int:
    return session.scalar(select(func.count(ExtractionFeedback.id))) or 0


def test_corrections_are_normalised_to_the_variable_type(session: Session) -> None:
    s = make_sample(session)
    cases = {
        "enrollment": ("1,250", 1250),
        "start_date": ("14 March 2019", "2019-03-14"),
        "phase": ("phase 3", "Phase 3"),
        "randomised": ("no", False),
        "sponsor": ("  Beta Pharma ", "Beta Pharma"),
    }
    for name, (typed, stored) in cases.items():
        outcome = feedback.record_feedback(session, s.cells[(0, name)].id, is_correct=False,
                                           corrected_value=typed, comment=f"{name} wrong")
        assert outcome.action == "created"
        assert outcome.feedback.corrected_value == stored
    session.commit()
    listed = {v.variable: v for v in feedback.list_feedback(session, "trials")}
    assert listed["enrollment"].corrected_value == 1250
    assert listed["enrollment"].extracted_value == 100
    assert listed["phase"].right_value == "Phase 3"
    assert listed["phase"].prompt_version == 1 and listed["phase"].filename == "doc0.txt"


@pytest.mark.parametrize(
    ("name", "typed", "message"),
    [
        ("enrollment", "lots", "write a plain number in participants"),
        ("enrollment", "12 of 40", "write a plain number"),
        ("enrollment", True, "write a plain number"),
        ("phase", "Phase 4", "choose one of 'Phase 1', 'Phase 2', 'Phase 3'"),
        ("start_date", "03/04/2020", "day and month are ambiguous; use ISO 8601"),
        ("start_date", "soon", "use ISO 8601"),
        ("start_date", "2021-02-30", "no such date"),
        ("randomised", "maybe", "true or false"),
    ],
)
def test_a_correction_that_does_not_fit_the_variable_is_refused(
    session: Session, name: str, typed: object, message: str
) -> None:
    s = make_sample(session)
    with pytest.raises(ValidationError) as err:
        feedback.record_feedback(session, s.cells[(0, name)].id, is_correct=False,
                                 corrected_value=typed)
    assert message in err.value.detail and f"'{name}'" in err.value.detail
    assert err.value.field == "corrected_value"
    assert _count(session) == 0


def test_unknown_or_malformed_extraction_is_not_found(session: Session) -> None:
    make_sample(session)
    ghost = str(uuid.uuid4())
    with pytest.raises(NotFoundError) as err:
        feedback.record_feedback(session, ghost, is_correct=True)
    assert ghost in err.value.detail
    with pytest.raises(NotFoundError):
        feedback.record_feedback(session, "not-an-id", is_correct=True)


def test_contradictory_verdicts_are_refused(session: Session) -> None:
    s = make_sample(session)
    cell = s.cells[(1, "enrollment")]  # extracted 101
    with pytest.raises(ValidationError, match="mark it correct instead"):
        feedback.record_feedback(session, cell.id, is_correct=False, corrected_value="101")
    with pytest.raises(ValidationError, match="takes no corrected value"):
        feedback.record_feedback(session, cell.id, is_correct=True, corrected_value=7)
    # Restating the extracted value on a "correct" verdict is harmless.
    ok = feedback.record_feedback(session, cell.id, is_correct=True, corrected_value="101")
    assert ok.feedback.is_correct and ok.feedback.corrected_value is None


def test_not_stated_is_a_correction_and_a_not_found_cannot_be_corrected_to_null(
    session: Session,
) -> None:
    s = make_sample(session, {(0, "sponsor"): "Acme", (1, "sponsor"): None})
    out = feedback.record_feedback(session, s.cells[(0, "sponsor")].id, is_correct=False)
    assert out.feedback.corrected_value is None and not out.feedback.is_correct
    with pytest.raises(ValidationError, match=r"\(not stated\) is what was extracted"):
        feedback.record_feedback(session, s.cells[(1, "sponsor")].id, is_correct=False)


def test_failed_cells_can_be_corrected_but_not_confirmed(session: Session) -> None:
    s = make_sample(session, {(0, "phase"): "FAILED"})
    with pytest.raises(ValidationError, match="failed and has no answer"):
        feedback.record_feedback(session, s.cells[(0, "phase")].id, is_correct=True)
    fixed = feedback.record_feedback(session, s.cells[(0, "phase")].id, is_correct=False,
                                     corrected_value="Phase 1")
    assert fixed.feedback.corrected_value == "Phase 1"


def test_one_verdict_per_extraction_and_source(session: Session) -> None:
    s = make_sample(session)
    cell = s.cells[(0, "phase")].id
    first = feedback.record_feedback(session, cell, is_correct=False, corrected_value="Phase 1")
    again = feedback.record_feedback(session, cell, is_correct=False, corrected_value="phase 1")
    assert again.action == "unchanged" and again.feedback.id == first.feedback.id
    changed = feedback.record_feedback(session, cell, is_correct=True, comment="my mistake")
    assert changed.action == "updated" and changed.feedback.id == first.feedback.id
    other = feedback.record_feedback(session, cell, is_correct=False, corrected_value="Phase 3",
                                     source="workbook")
    # It replaces the current verdict (the CLI's stays as history): not a second new one.
    assert other.action == "updated" and other.feedback.id != first.feedback.id
    session.commit()
    assert _count(session) == 2
    every = feedback.list_feedback(session, "trials")
    effective = feedback.list_feedback(session, "trials", effective_only=True)
    assert len(every) == 2 and len(effective) == 1
    assert effective[0].source == "workbook" and effective[0].corrected_value == "Phase 3"


def test_multi_select_corrections_are_lists_in_codebook_order(session: Session) -> None:
    s = make_sample(session, {(0, "sponsor"): "Acme"})
    from extraction import codebook
    var = codebook.add_variable(session, s.project, {
        "name": "arms", "type": "CATEGORY", "categories": ["drug", "placebo", "surgery"],
        "multi_select": True, "allow_other": True})
    s.variables["arms"] = var
    add_job(session, s, {(0, "arms"): ["drug"]})
    cell = s.cells[(0, "arms")]
    out = feedback.record_feedback(session, cell.id, is_correct=False,
                                   corrected_value="Placebo; drug; other")
    assert out.feedback.corrected_value == ["drug", "placebo", "other"]
    assert corrections.same_value(var, ["placebo", "drug", "other"], "drug;other;placebo")
    # As the prompt asks of the model: a value that fits no category is "other".
    other = feedback.record_feedback(session, cell.id, is_correct=False,
                                     corrected_value='["drug", "chemo"]')
    assert other.feedback.corrected_value == ["drug", "other"]


def test_list_filters_by_job_and_variable_and_keeps_prompt_versions(session: Session) -> None:
    s = make_sample(session)
    feedback.record_feedback(session, s.cells[(0, "phase")].id, is_correct=False,
                             corrected_value="Phase 1")
    feedback.record_feedback(session, s.cells[(0, "sponsor")].id, is_correct=True)
    add_prompt_version(session, s.variables["phase"], "Phase, refined")
    second = add_job(session, s, {(0, "phase"): "Phase 1"})
    feedback.record_feedback(session, s.cells[(0, "phase")].id, is_correct=True)
    session.commit()

    phase = feedback.list_feedback(session, "trials", variable="phase")
    assert [(v.prompt_version, v.is_correct) for v in phase] == [(1, False), (2, True)]
    only_second = feedback.list_feedback(session, s.project.id, job=str(second.id))
    assert [v.variable for v in only_second] == ["phase"]
    with pytest.raises(NotFoundError, match="no job with id"):
        feedback.list_feedback(session, "trials", job=str(uuid.uuid4()))
    with pytest.raises(NotFoundError, match="has no variable 'ghost'"):
        feedback.list_feedback(session, "trials", variable="ghost")

