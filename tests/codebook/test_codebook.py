"""Projects and variables through the Python API: the seed's US1 acceptance criteria."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.orm import Session

from extraction import codebook
from extraction.errors import ConflictError, NotFoundError, ValidationError


def _project(session: Session, name: str = "trials") -> codebook.Project:
    project = codebook.create_project(session, {"name": name, "description": "d",
                                                "domain_context": "clinical trial reports"})
    session.commit()
    return project


def test_create_project_returns_uuid_and_starts_at_schema_v1(session: Session) -> None:
    project = _project(session)
    assert isinstance(project.id, uuid.UUID)
    assert project.schema_version == 1
    assert codebook.get_project(session, "trials").id == project.id
    assert codebook.get_project(session, str(project.id)).name == "trials"


def test_duplicate_project_name_is_a_conflict(session: Session) -> None:
    _project(session)
    with pytest.raises(ConflictError, match="already exists") as info:
        codebook.create_project(session, {"name": "trials"})
    assert info.value.field == "name"


def test_empty_project_name_is_rejected(session: Session) -> None:
    with pytest.raises(ValidationError) as info:
        codebook.create_project(session, {"name": "   "})
    assert info.value.field == "name"


def test_unknown_project_is_not_found(session: Session) -> None:
    with pytest.raises(NotFoundError, match="no project with id or name 'ghost'"):
        codebook.get_project(session, "ghost")


def test_add_variables_with_name_type_instructions(session: Session) -> None:
    project = _project(session)
    codebook.add_variable(session, project, {"name": "phase", "type": "category",
                                             "categories": ["Phase 1", "Phase 2"],
                                             "instructions": "The trial phase"})
    codebook.add_variable(session, project, {"name": "enrollment", "type": "NUMBER",
                                             "unit": "participants"})
    session.commit()
    variables = codebook.list_variables(session, "trials")
    assert [v.name for v in variables] == ["phase", "enrollment"]
    assert variables[0].categories == ["Phase 1", "Phase 2"]
    assert variables[0].instructions == "The trial phase"
    assert variables[1].position == 1
    assert codebook.get_project(session, "trials").schema_version == 3


def test_update_increments_variable_and_schema_version(session: Session) -> None:
    project = _project(session)
    codebook.add_variable(session, project, {"name": "phase", "type": "TEXT"})
    before = project.schema_version
    variable = codebook.update_variable(session, project, "phase",
                                        {"instructions": "Phase as written"})
    assert variable.version == 2
    assert project.schema_version == before + 1
    # an update that changes nothing is not a new version
    same = codebook.update_variable(session, project, "phase",
                                    {"instructions": "Phase as written"})
    assert same.version == 2 and project.schema_version == before + 1


def test_project_retrieved_with_all_live_variables(session: Session) -> None:
    project = _project(session)
    for name in ("a_one", "b_two", "c_three"):
        codebook.add_variable(session, project, {"name": name, "type": "BOOLEAN"})
    codebook.delete_variable(session, project, "b_two")
    session.commit()
    data = codebook.project_to_dict(codebook.get_project(session, "trials"),
                                    codebook.list_variables(session, "trials"))
    assert [v["name"] for v in data["variables"]] == ["a_one", "c_three"]
    assert data["schema_version"] == 5


def test_soft_delete_keeps_history_and_frees_the_name(session: Session) -> None:
    project = _project(session)
    codebook.add_variable(session, project, {"name": "phase", "type": "TEXT"})
    codebook.update_variable(session, project, "phase", {"label": "Trial phase"})
    codebook.delete_variable(session, project, "phase")
    session.commit()
    assert codebook.list_variables(session, project) == []
    assert len(codebook.list_variables(session, project, include_deleted=True)) == 1
    with pytest.raises(NotFoundError):
        codebook.get_variable(session, project, "phase")
    # the name can be used again, and history shows both lives
    codebook.add_variable(session, project, {"name": "phase", "type": "NUMBER"})
    session.commit()
    history = codebook.variable_history(session, project, "phase")
    assert [(r.change, r.snapshot["type"]) for r in history] == [
        ("created", "TEXT"), ("updated", "TEXT"), ("deleted", "TEXT"), ("created", "NUMBER")]


def test_rename_to_an_existing_name_is_a_conflict(session: Session) -> None:
    project = _project(session)
    codebook.add_variable(session, project, {"name": "alpha", "type": "TEXT"})
    codebook.add_variable(session, project, {"name": "beta", "type": "TEXT"})
    with pytest.raises(ConflictError, match="already has a variable named 'alpha'"):
        codebook.update_variable(session, project, "beta", {"name": "alpha"})


def test_duplicate_variable_name_is_a_conflict(session: Session) -> None:
    project = _project(session)
    codebook.add_variable(session, project, {"name": "alpha", "type": "TEXT"})
    with pytest.raises(ConflictError):
        codebook.add_variable(session, project, {"name": "alpha", "type": "NUMBER"})


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"name": "Trial Phase", "type": "TEXT"}, "name", "not a safe variable name"),
        ({"name": "2fast", "type": "TEXT"}, "name", "not a safe variable name"),
        ({"name": "document_id", "type": "TEXT"}, "name", "reserved"),
        ({"name": "filename", "type": "TEXT"}, "name", "reserved"),
        ({"name": "class", "type": "TEXT"}, "name", "reserved"),
        ({"name": "phase", "type": "CATEGORY"}, "categories", "non-empty list of categories"),
        ({"name": "phase", "type": "CATEGORY", "categories": []}, "categories", "non-empty"),
        ({"name": "phase", "type": "CATEGORY", "categories": ["A", "a"]}, "categories",
         "listed twice"),
        ({"name": "phase", "type": "TEXT", "categories": ["A"]}, "categories",
         "only for CATEGORY"),
        ({"name": "phase", "type": "NUMBER", "multi_select": True}, "multi_select",
         "only for CATEGORY"),
        ({"name": "phase", "type": "INTEGER"}, "type", "unknown type 'INTEGER'"),
        ({"name": "phase", "type": "TEXT", "colour": "red"}, "colour", "unknown field"),
    ],
)
def test_bad_variable_definitions_name_the_field(
    session: Session, spec: dict, field: str, message: str
) -> None:
    project = _project(session)
    with pytest.raises(ValidationError, match=message) as info:
        codebook.add_variable(session, project, spec)
    assert info.value.field == field
    assert info.value.to_problem()["field"] == field


def test_changing_category_to_text_drops_categories(session: Session) -> None:
    project = _project(session)
    codebook.add_variable(session, project, {"name": "phase", "type": "CATEGORY",
                                             "categories": ["A", "B"], "allow_other": True})
    variable = codebook.update_variable(session, project, "phase", {"type": "TEXT"})
    assert variable.categories is None and variable.allow_other is False


def test_update_that_breaks_type_rules_is_rejected(session: Session) -> None:
    project = _project(session)
    codebook.add_variable(session, project, {"name": "phase", "type": "TEXT"})
    with pytest.raises(ValidationError, match="non-empty list of categories"):
        codebook.update_variable(session, project, "phase", {"type": "CATEGORY"})


def test_delete_project_cascades(session: Session) -> None:
    project = _project(session)
    codebook.add_variable(session, project, {"name": "phase", "type": "TEXT"})
    session.commit()
    codebook.delete_project(session, "trials")
    session.commit()
    from sqlalchemy import func, select

    from extraction.models import Variable, VariableRevision

    assert session.scalar(select(func.count(Variable.id))) == 0
    assert session.scalar(select(func.count(VariableRevision.id))) == 0


def test_list_projects_pages(session: Session) -> None:
    for i in range(5):
        codebook.create_project(session, {"name": f"p{i}"})
    session.commit()
    assert [p.name for p in codebook.list_projects(session, limit=2, offset=2)] == ["p2", "p3"]
    assert codebook.count_projects(session) == 5
    with pytest.raises(ValidationError):
        codebook.list_projects(session, limit=0)
