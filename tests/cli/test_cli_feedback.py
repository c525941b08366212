"""`feedback`, `review` and `scorecard` through the CLI: outputs, --json and readable errors."""

from __future__ import annotations

import uuid
from pathlib import Path

from openpyxl import load_workbook
from openpyxl.utils import get_column_letter
from sqlalchemy.orm import Session

from extraction.review.workbook import COLUMN_NUMBER, REVIEW_SHEET
from testing.review_factory import add_job, add_prompt_version, make_sample
from tests.cli_helpers import run_cli

#: The columns a reviewer fills in, by letter (they move when a column is added before them).
J, K, L = (get_column_letter(COLUMN_NUMBER[key]) for key in ("correct", "corrected", "comment"))


def test_feedback_add_and_list(session: Session) -> None:
    s = make_sample(session)
    phase = str(s.cells[(0, "phase")].id)
    wrong = run_cli("feedback", "add", phase, "--value", "phase 1", "-c", "says phase I")
    assert wrong.exit_code == 0, wrong.stderr
    assert "Recorded: doc0.txt · phase (prompt v1): Phase 2 is wrong → Phase 1" in wrong.stdout
    again = run_cli("feedback", "add", phase, "--value", "Phase 1", "-c", "says phase I",
                    "--json")
    assert again.json()["action"] == "unchanged" and again.json()["corrected_value"] == "Phase 1"
    ok = run_cli("feedback", "add", str(s.cells[(1, "enrollment")].id), "--correct")
    assert "101 is correct" in ok.stdout
    gone = run_cli("feedback", "add", str(s.cells[(2, "sponsor")].id), "--not-stated")
    assert "Acme 2 is wrong → (not stated)" in gone.stdout

    listed = run_cli("feedback", "list", "trials", "--json").json()
    assert [(r["variable"], r["is_correct"]) for r in listed] == [
        ("phase", False), ("enrollment", True), ("sponsor", False)]
    only = run_cli("feedback", "list", "trials", "--variable", "phase", "--json").json()
    assert len(only) == 1 and only[0]["comment"] == "says phase I"
    human = run_cli("feedback", "list", "trials", "--job", str(s.job.id))
    assert "3 verdict(s): 1 correct, 2 wrong" in human.stdout
    assert "Phase 1" in human.stdout


def test_feedback_errors_are_clear(session: Session) -> None:
    s = make_sample(session)
    ghost = str(uuid.uuid4())
    missing = run_cli("feedback", "add", ghost, "--correct")
    assert missing.exit_code == 3 and f"no extraction with id '{ghost}'" in missing.stderr
    assert "Traceback" not in missing.stderr + missing.stdout

    cell = str(s.cells[(0, "enrollment")].id)
    bad = run_cli("feedback", "add", cell, "--value", "lots", "--json")
    assert bad.exit_code == 4
    problem = bad.json()["error"]
    assert problem["field"] == "corrected_value" and "plain number" in problem["detail"]
    category = run_cli("feedback", "add", str(s.cells[(0, "phase")].id), "--value", "Phase 7")
    assert category.exit_code == 4 and "choose one of 'Phase 1'" in category.stderr

    both = run_cli("feedback", "add", cell, "--correct", "--value", "3")
    assert both.exit_code == 4 and "exactly one of" in both.stderr
    neither = run_cli("feedback", "add", cell)
    assert neither.exit_code == 4
    assert run_cli("feedback", "list", "ghost").exit_code == 3
    assert run_cli("feedback", "list", "trials", "--job", "nope").exit_code == 3


def test_review_round_trip_through_the_cli(session: Session, tmp_path: Path) -> None:
    s = make_sample(session)
    path = tmp_path / "review.xlsx"
    out = run_cli("review", "export", str(s.job.id), str(path))
    assert out.exit_code == 0, out.stderr
    assert "Wrote 15 row(s)" in out.stdout and path.exists()

    wb = load_workbook(path)
    ws = wb[REVIEW_SHEET]
    ws[f"{J}2"], ws[f"{K}2"], ws[f"{L}2"] = "no", "Beta", "wrong company"
    ws[f"{J}3"], ws[f"{K}3"] = "no", "Phase 7"
    ws[f"{J}4"] = "maybe"
    wb.save(path)
    bad = run_cli("review", "import", str(path))
    assert bad.exit_code == 4
    assert "2 row(s) of sheet 'Review'" in bad.stderr and "nothing was imported" in bad.stderr
    assert "Row 3, corrected value" in bad.stderr
    assert f"also: Review!{J}4: 'maybe' is not an answer" in bad.stderr
    problem = run_cli("review", "import", str(path), "--json").json()["error"]
    assert [e["field"] for e in problem["errors"]] == [f"Review!{K}3", f"Review!{J}4"]
    assert run_cli("feedback", "list", "trials", "--json").json() == []

    ws[f"{J}3"], ws[f"{K}3"], ws[f"{J}4"] = None, None, None
    wb.save(path)
    good = run_cli("review", "import", str(path), "--json")
    assert good.exit_code == 0, good.stderr
    assert good.json()["created"] == 1 and good.json()["blank"] == 14
    twice = run_cli("review", "import", str(path))
    assert "0 new, 0 updated, 1 unchanged" in twice.stdout

    wb = load_workbook(path)
    del wb[REVIEW_SHEET]
    wb.save(path)
    sheetless = run_cli("review", "import", str(path))
    assert sheetless.exit_code == 4 and "no sheet 'Review'" in sheetless.stderr
    assert "field: Review" in sheetless.stderr
    assert run_cli("review", "export", str(uuid.uuid4()), str(path)).exit_code == 3


def test_scorecard_shows_old_and_new_values(session: Session) -> None:
    s = make_sample(session)
    run_cli("feedback", "add", str(s.cells[(0, "phase")].id), "--value", "Phase 1")
    run_cli("feedback", "add", str(s.cells[(1, "phase")].id), "--correct")
    before = run_cli("scorecard", "trials")
    assert before.exit_code == 0, before.stderr
    assert "50% (1/2)" in before.stdout and "nothing to compare yet" in before.stdout

    add_prompt_version(session, s.variables["phase"], "Phase, refined")
    add_job(session, s, {(0, "phase"): "Phase 1", (1, "phase"): "Phase 2"})
    session.commit()
    after = run_cli("scorecard", "trials")
    assert "100% (2/2)" in after.stdout
    assert "1 fixed, 1 kept" in after.stdout
    line = next(ln for ln in after.stdout.splitlines() if "doc0.txt" in ln)
    assert "Phase 2 → Phase 1" in line and "v1→v2" in line and "fixed" in line
    data = run_cli("scorecard", "trials", "--json").json()
    assert data["latest_sample"]["counts"]["fixed"] == 1
    assert run_cli("scorecard", "ghost").exit_code == 3


def _refinable(session: Session):  # type: ignore[no-untyped-def]
    s = make_sample(session)
    for name, right in (("phase", "Phase 1"), ("enrollment", 250)):
        run_cli("feedback", "add", str(s.cells[(0, name)].id), "--value", str(right))
    return s


def _rewrite(request):  # type: ignore[no-untyped-def]
    block = request.user_text.split("<<<\n", 1)[1].split("\n>>>", 1)[0]
    return {"instruction_block": block + "\n- Prefer the title.", "rationale": "see title"}


def test_prompt_refine_through_the_cli(session: Session, fake_llm) -> None:  # type: ignore[no-untyped-def]
    from testing.fake_llm_server import ScriptedResponder

    _refinable(session)
    fake_llm.responder = ScriptedResponder().when("Rewrite the instruction block", _rewrite,
                                                  where="system")
    out = run_cli("prompt", "refine", "trials", "--variable", "phase")
    assert out.exit_code == 0, out.stderr
    assert "phase: v1 is now v2 (refined from 1 correction(s); 1 of 1 worked" in out.stdout
    assert "refined from 1 correction(s) of prompt v1 (doc0.txt): see title" in out.stdout
    assert "---" not in out.stdout  # the diff is for dry runs; `prompt diff` shows it after
    history = run_cli("prompt", "history", "trials", "phase", "--json").json()
    assert [(h["version"], h["origin"]) for h in history] == [(1, "generated"), (2, "refined")]
    assert "- Prefer the title." in history[1]["user_template"]
    assert fake_llm.total_requests == 1
    assert fake_llm.chat_requests[0].model == "fake-model"

    missing = run_cli("prompt", "refine", "trials", "--model", "other-model", "--json")
    assert missing.exit_code == 10 and missing.json()["error"]["status_code"] == 404
    fake_llm.models = ["fake-model", "other-model"]
    data = run_cli("prompt", "refine", "trials", "--json", "--model", "other-model").json()
    assert [r["variable"] for r in data["results"]] == ["enrollment"]  # phase: nothing new
    assert data["results"][0]["to_version"] == 2 and "phase" in data["skipped"]
    assert fake_llm.chat_requests[-1].model == "other-model"
    again = run_cli("prompt", "refine", "trials")
    assert again.exit_code == 0 and "nothing to refine" in again.stdout


def test_prompt_refine_errors(session: Session, fake_llm) -> None:  # type: ignore[no-untyped-def]
    _refinable(session)
    fake_llm.fail_next(8, "500")  # more than the retries of both requests
    failed = run_cli("prompt", "refine", "trials")
    assert failed.exit_code == 1
    assert "phase: not refined" in failed.stdout and "500" in failed.stdout
    assert run_cli("prompt", "history", "trials", "phase", "--json").json()[-1]["version"] == 1

    fake_llm.reset()
    fake_llm.fail_next(1, "401")
    fatal = run_cli("prompt", "refine", "trials")
    assert fatal.exit_code == 10 and "LLM provider problem" in fatal.stderr
    assert "Traceback" not in fatal.stderr + fatal.stdout
    assert run_cli("prompt", "refine", "ghost").exit_code == 3
    unknown = run_cli("prompt", "refine", "trials", "--variable", "nope")
    assert unknown.exit_code == 3 and "has no variable 'nope'" in unknown.stderr
