"""Category aliases: declared in the codebook file (per category or as a mapping) or on the
command line, stored with the variable on SQLite and PostgreSQL, round-tripped by export, and
read as their label when a model answers with one."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from extraction import codebook
from extraction.codebook.file import apply_codebook, export_codebook, load_codebook
from extraction.codebook.values import normalize_value
from extraction.errors import ValidationError
from extraction.prompts.versions import current_prompt
from extraction.run.plan import variable_info
from tests.cli_helpers import run_cli

BOOK = """\
project:
  name: trials
variables:
  - name: sponsor_type
    type: CATEGORY
    categories:
      - label: Industry
        aliases: [pharmaceutical company, Inc.]
      - Academic
      - Government
    category_aliases:
      Academic: [university]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "codebook.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_aliases_are_stored_round_trip_and_reach_the_prompt(session: Session,
                                                            tmp_path: Path) -> None:
    apply_codebook(session, load_codebook(_write(tmp_path, BOOK)))
    session.commit()
    variable = codebook.get_variable(session, "trials", "sponsor_type")
    assert variable.category_aliases == {"Industry": ["pharmaceutical company", "Inc."],
                                         "Academic": ["university"]}
    exported = export_codebook(session, "trials")
    assert "category_aliases" in exported
    assert apply_codebook(session, load_codebook(_write(tmp_path, exported))) == []
    block = current_prompt(session, variable).user_template
    assert '"Industry" (also called: pharmaceutical company, Inc.)' in block
    # an answer given as an alias is stored as its label
    info = variable_info(variable)
    assert normalize_value(info, "Pharmaceutical Company") == "Industry"
    assert normalize_value(info, "university") == "Academic"
    with pytest.raises(ValueError, match="not one of the categories"):
        normalize_value(info, "a charity")


def test_changing_aliases_is_a_new_version_and_dropping_a_category_drops_its_aliases(
        session: Session, tmp_path: Path) -> None:
    apply_codebook(session, load_codebook(_write(tmp_path, BOOK)))
    changed = BOOK.replace("[university]", "[university, university hospital]")
    changes = apply_codebook(session, load_codebook(_write(tmp_path, changed)))
    assert [c.action for c in changes] == ["update"]
    assert "category_aliases" in changes[0].fields
    variable = codebook.update_variable(session, "trials", "sponsor_type",
                                        {"categories": ["Industry", "Government"]})
    assert variable.category_aliases == {"Industry": ["pharmaceutical company", "Inc."]}


@pytest.mark.parametrize(("aliases", "message"), [
    ("{Charity: [foundation]}", "'Charity', which is not one of the categories"),
    ("{Industry: [academic]}", "would also name 'Academic'"),
    ("{Industry: [company], Academic: [Company]}", "would also name 'Industry'"),
    ("{Industry: ['']}", "empty string"),
])
def test_bad_aliases_name_the_line_and_the_problem(tmp_path: Path, aliases: str,
                                                   message: str) -> None:
    text = ("project:\n  name: x\nvariables:\n  - name: s\n    type: CATEGORY\n"
            f"    categories: [Industry, Academic]\n    category_aliases: {aliases}\n")
    with pytest.raises(ValidationError, match=message) as info:
        load_codebook(_write(tmp_path, text))
    assert "line 7" in info.value.detail


def test_aliases_only_for_category_variables(tmp_path: Path) -> None:
    text = ("project:\n  name: x\nvariables:\n  - name: n\n    type: NUMBER\n"
            "    category_aliases: {A: [b]}\n")
    with pytest.raises(ValidationError, match="only for CATEGORY"):
        load_codebook(_write(tmp_path, text))


def test_aliases_from_the_command_line(db_url: str) -> None:
    run_cli("project", "create", "p")
    added = run_cli("variable", "add", "p", "sponsor", "-t", "CATEGORY", "-C", "Industry",
                    "-C", "Academic", "--alias", "Industry=pharmaceutical company",
                    "--alias", "Industry=Inc.", "-A", "Academic=university", "--json")
    assert added.exit_code == 0, added.stderr
    assert added.json()["category_aliases"] == {
        "Industry": ["pharmaceutical company", "Inc."], "Academic": ["university"]}
    bad = run_cli("variable", "update", "p", "sponsor", "--alias", "Industry")
    assert bad.exit_code == 4 and "CATEGORY=ALIAS" in bad.stderr
    unknown = run_cli("variable", "update", "p", "sponsor", "--alias", "Charity=foundation",
                      "--json")
    assert unknown.json()["error"]["field"] == "category_aliases"
