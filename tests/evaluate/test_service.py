"""The evaluation of a project against a gold file, figure by figure (see conftest.py)."""

from __future__ import annotations

from pathlib import Path

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from sqlalchemy.orm import Session

from config.settings import get_settings
from extraction.errors import NotFoundError, StateError
from extraction.evaluate import evaluate_project
from testing.extraction_factory import make_project
from tests.evaluate.conftest import Evaluated


def _by_name(evaluation):
    return {v.name: v for v in evaluation.variables}


def test_counts_and_scores_per_variable(session: Session, evaluated: Evaluated) -> None:
    evaluation = evaluate_project(session, evaluated.project, evaluated.gold)
    v = _by_name(evaluation)
    phase = v["phase"]
    assert (phase.gold_cells, phase.not_extracted) == (7, 1)
    c = phase.counts
    assert (c.cells, c.correct, c.wrong, c.omission, c.hallucination, c.both_absent) == \
        (6, 3, 1, 1, 1, 0)
    assert phase.stats["accuracy"].value == pytest.approx(3 / 6)
    assert phase.stats["precision"].value == pytest.approx(3 / 5)
    assert phase.stats["recall"].value == pytest.approx(3 / 5)
    gold = ["phase 1", "phase 2", "phase 3", "phase 1", "phase 2", "(not stated)"]
    got = ["phase 1", "phase 2", "phase 1", "(not stated)", "phase 2", "phase 3"]
    assert phase.stats["kappa"].value == pytest.approx(cohen_kappa_score(gold, got))
    codes = {label: i for i, label in enumerate(sorted(set(gold + got)))}
    assert phase.stats["alpha"].value == pytest.approx(krippendorff.alpha(
        reliability_data=[[codes[g] for g in gold], [codes[x] for x in got]],
        level_of_measurement="nominal"))
    enrollment = v["enrollment"]
    assert (enrollment.counts.correct, enrollment.counts.wrong) == (5, 1)
    assert enrollment.stats["kappa"].value is None and enrollment.alpha_level == "interval"
    assert enrollment.stats["alpha"].value == pytest.approx(krippendorff.alpha(
        reliability_data=[[100, 200, 300, 400, 500, 600], [100, 200, 300, 400, 500, 601]],
        level_of_measurement="interval"))
    randomised = v["randomised"]
    assert (randomised.counts.correct, randomised.counts.wrong, randomised.counts.omission) \
        == (4, 1, 1)
    start = v["start_date"]  # 2021-03 matches 2021-03-14; the rest are "not stated" on both
    assert (start.counts.correct, start.counts.both_absent) == (1, 5)
    sponsor = v["sponsor"]  # a variable with no gold
    assert sponsor.gold_cells == 0 and sponsor.counts.cells == 0
    assert sponsor.stats["accuracy"].value is None
    overall = evaluation.overall_counts
    assert overall.cells == 24 and evaluation.documents == 6
    assert evaluation.overall["accuracy"].value == pytest.approx((3 + 5 + 4 + 6) / 24)


def test_intervals_bracket_the_estimates_and_repeat_with_the_seed(
        session: Session, evaluated: Evaluated) -> None:
    first = evaluate_project(session, evaluated.project, evaluated.gold)
    again = evaluate_project(session, evaluated.project, evaluated.gold)
    accuracy = first.overall["accuracy"]
    assert accuracy.low <= accuracy.value <= accuracy.high
    assert (accuracy.low, accuracy.high) == (again.overall["accuracy"].low,
                                             again.overall["accuracy"].high)
    seeded = evaluate_project(session, evaluated.project, evaluated.gold,
                              settings=get_settings(eval_bootstrap_seed=7))
    assert seeded.bootstrap.seed == 7


def test_calibration_and_budget_of_the_evaluated_cells(session: Session,
                                                       evaluated: Evaluated) -> None:
    evaluation = evaluate_project(session, evaluated.project, evaluated.gold)
    cal = evaluation.calibration
    assert cal.cells == 23  # the failed randomised cell has no confidence
    assert 0.0 <= cal.auroc <= 1.0 and 0.0 <= cal.ece <= 1.0
    budget = evaluation.budget
    assert [round(r.share, 2) for r in budget] == [0.05, 0.1, 0.2, 0.3]
    assert budget[0].accuracy_before == pytest.approx(18 / 24)
    assert all(r.accuracy_after >= r.accuracy_before for r in budget)
    # the least confident cell is the failed one (an omission), then 0.2 (a wrong boolean)
    assert budget[0].reviewed == 2 and budget[0].accuracy_after == pytest.approx(20 / 24)


def test_one_variable_one_job_and_feedback_as_gold(session: Session,
                                                   evaluated: Evaluated) -> None:
    only = evaluate_project(session, evaluated.project, evaluated.gold, variable="phase",
                            job=evaluated.job_id[:8])
    assert [v.name for v in only.variables] == ["phase"] and only.job_id == evaluated.job_id
    nothing = evaluate_project(session, evaluated.project, "feedback")  # nobody reviewed yet
    assert nothing.cells == 0 and nothing.overall["accuracy"].value is None
    with pytest.raises(NotFoundError, match="no variable 'colour'"):
        evaluate_project(session, evaluated.project, evaluated.gold, variable="colour")


def test_empty_gold_and_nothing_extracted(session: Session, evaluated: Evaluated,
                                          tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("filename,phase\n", encoding="utf-8")
    evaluation = evaluate_project(session, evaluated.project, empty)
    assert evaluation.cells == 0 and evaluation.calibration.auroc is None
    assert all(v.gold_cells == 0 for v in evaluation.variables)
    assert np.isnan(evaluation.budget[0].accuracy_before or np.nan)
    make_project(session, name="fresh")
    session.commit()
    with pytest.raises(StateError, match="no COMPLETE job"):
        evaluate_project(session, "fresh", empty)


def test_the_selection_is_the_one_exports_use(session: Session, evaluated: Evaluated) -> None:
    """A later job replaces the cells it answered; its failures never hide an earlier answer."""
    import duckdb

    from extraction import codebook
    from extraction.evaluate.cells import load_extracted
    from extraction.export.query import load_cells
    from extraction.models import JobStatus
    from testing.extraction_factory import Cell, add_job

    project = codebook.get_project(session, evaluated.project)
    docs = evaluated.documents
    add_job(session, project, {(docs[0], "phase"): "Phase 3",
                               (docs[1], "phase"): Cell(None, status="failed")})
    add_job(session, project, {(docs[2], "phase"): "Phase 2"}, status=JobStatus.FAILED)
    session.commit()
    ours = load_extracted(session, project).cells
    con = duckdb.connect()
    load_cells(session, con, project)
    theirs = {(doc, name): (job, status) for doc, name, job, status in con.execute(
        "SELECT c.document_id, v.variable, c.job_id, c.status FROM cells c "
        "JOIN variables v USING (var_idx)").fetchall()}
    con.close()
    assert {k: (c.job_id, c.status) for k, c in ours.items()} == theirs
    assert ours[(str(docs[0].id), "phase")].value == "Phase 3"
    assert not ours[(str(docs[1].id), "phase")].failed  # the earlier answer is kept
    assert ours[(str(docs[2].id), "phase")].value == "Phase 1"  # the FAILED job never counts
