"""The YAML codebook: idempotent apply with a diff, dry-run, export round trip, line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from extraction import codebook
from extraction.codebook.file import apply_codebook, export_codebook, load_codebook
from extraction.errors import NotFoundError, ValidationError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "clinical_trials.codebook.yaml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "codebook.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_codebook_applies_then_is_a_no_op(session: Session) -> None:
    book = load_codebook(EXAMPLE)
    changes = apply_codebook(session, book)
    session.commit()
    assert changes[0].action == "create-project"
    assert [c.target for c in changes[1:]] == [v.name for v in book.variables]
    assert len(book.variables) == 8
    assert apply_codebook(session, load_codebook(EXAMPLE)) == []


def test_changed_file_gives_a_diff_and_bumps_schema(session: Session, tmp_path: Path) -> None:
    apply_codebook(session, load_codebook(EXAMPLE))
    session.commit()
    before = codebook.get_project(session, "clinical-trials").schema_version
    text = EXAMPLE.read_text().replace("[Phase 1, Phase 2, Phase 3, Phase 4, Not applicable]",
                                       "[Early phase 1, Phase 1, Phase 2, Phase 3, Phase 4]")
    text = text.replace("  - name: primary_outcome\n    type: TEXT\n", "  - name: primary_outcome\n    type: TEXT\n    required: true\n")
    text = text.split("  - name: randomized")[0] + "  - name: blinded\n    type: BOOLEAN\n"
    changes = apply_codebook(session, load_codebook(_write(tmp_path, text)))
    session.commit()
    summary = {(c.action, c.target) for c in changes}
    assert ("update", "phase") in summary
    assert ("add", "blinded") in summary
    assert ("delete", "randomized") in summary and ("delete", "primary_outcome") in summary
    phase = next(c for c in changes if c.target == "phase")
    assert phase.fields["categories"][1][0] == "Early phase 1"
    after = codebook.get_project(session, "clinical-trials").schema_version
    assert after == before + len(changes)


def test_dry_run_changes_nothing(session: Session) -> None:
    changes = apply_codebook(session, load_codebook(EXAMPLE), dry_run=True)
    assert len(changes) == 9
    with pytest.raises(NotFoundError):
        codebook.get_project(session, "clinical-trials")


def test_export_round_trips(session: Session, tmp_path: Path) -> None:
    apply_codebook(session, load_codebook(EXAMPLE))
    session.commit()
    exported = _write(tmp_path, export_codebook(session, "clinical-trials"))
    assert apply_codebook(session, load_codebook(exported)) == []
    assert load_codebook(exported) == load_codebook(EXAMPLE)


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        ("project:\n  name: x\nvariables:\n  - name: ok\n    type: TEXT\n"
         "  - name: Bad Name\n    type: TEXT\n", 6, "variables.1.name", "not a safe variable"),
        ("project:\n  name: x\nvariables:\n  - name: ok\n   type: TEXT\n", 5, None,
         "malformed YAML"),
        ("project:\n  name: x\nvariables:\n  - name: p\n    type: CATEGORY\n", 4,
         "variables.0.categories", "non-empty list of categories"),
        ("project:\n  name: x\nvariables:\n  - name: p\n    type: TEXT\n  - name: p\n"
         "    type: NUMBER\n", 6, "variables.1.name", "defined twice"),
        ("project:\n  name: x\nvariables:\n  - name: p\n    type: DECIMAL\n", 5,
         "variables.0.type", "unknown type 'DECIMAL'"),
        ("project:\n  name: x\n  colour: red\n", 3, "project.colour", "unknown field"),
        ("projects:\n  name: x\n", 1, "projects", "unknown top-level key"),
        ("project:\n  description: no name\n", 2, "project.name", "'name' is required"),
    ],
)
def test_bad_codebooks_report_line_and_field(
    tmp_path: Path, text: str, line: int, field: str | None, message: str
) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        load_codebook(_write(tmp_path, text))
    assert f"line {line}" in info.value.detail
    assert info.value.field == field


def test_missing_codebook_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="codebook file not found"):
        load_codebook(tmp_path / "nope.yaml")
