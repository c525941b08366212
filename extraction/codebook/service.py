"""Projects and their typed variables: the codebook, as plain service functions.

Every function takes a SQLAlchemy session and plain data, so flows, the CLI and notebooks share
one implementation. Each change to a variable bumps the variable's ``version`` and the project's
``schema_version`` and writes a :class:`VariableRevision` snapshot, so any past state of the
codebook can be shown and jobs can record which schema they ran against.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from extraction import prompts
from extraction.codebook.lookup import (
    count_projects,
    get_project,
    get_variable,
    list_projects,
    list_variables,
)
from extraction.codebook.specs import (
    check_aliases_fit,
    ProjectSpec,
    ProjectUpdate,
    VariableSpec,
    VariableUpdate,
    _VariableRules,
    parse_spec,
)
from extraction.errors import ConflictError, NotFoundError, ValidationError
from extraction.models import Project, Variable, VariableRevision, VariableType, utcnow

__all__ = [
    "create_project",
    "list_projects",
    "count_projects",
    "get_project",
    "update_project",
    "delete_project",
    "add_variable",
    "list_variables",
    "get_variable",
    "update_variable",
    "delete_variable",
    "variable_history",
    "variable_snapshot",
    "project_to_dict",
    "variable_to_dict",
]

_VARIABLE_FIELDS = (
    "name", "label", "type", "instructions", "categories", "category_aliases", "allow_other",
    "multi_select", "unit", "format_hint", "required", "position",
)


# ---------------------------------------------------------------- projects


def create_project(session: Session, spec: ProjectSpec | dict[str, Any]) -> Project:
    """Create a project; its name must be unique."""
    if isinstance(spec, dict):
        spec = parse_spec(ProjectSpec, spec)
    if session.scalar(select(Project.id).where(Project.name == spec.name)) is not None:
        raise ConflictError(f"a project named '{spec.name}' already exists", field="name")
    project = Project(
        name=spec.name,
        description=spec.description,
        domain_context=spec.domain_context,
        settings=dict(spec.settings),
        schema_version=1,
    )
    session.add(project)
    session.flush()
    return project


def update_project(
    session: Session, ref: str | uuid.UUID | Project, changes: ProjectUpdate | dict[str, Any]
) -> Project:
    """Change a project's name, description, domain context or settings."""
    if isinstance(changes, dict):
        changes = parse_spec(ProjectUpdate, changes)
    project = ref if isinstance(ref, Project) else get_project(session, ref)
    old_context = project.domain_context
    if changes.name is not None and changes.name != project.name:
        clash = session.scalar(select(Project.id).where(Project.name == changes.name))
        if clash is not None:
            raise ConflictError(f"a project named '{changes.name}' already exists", field="name")
        project.name = changes.name
    if changes.description is not None:
        project.description = changes.description
    if changes.domain_context is not None:
        project.domain_context = changes.domain_context
    if changes.settings is not None:
        project.settings = {**(project.settings or {}), **changes.settings}
    session.flush()
    if project.domain_context != old_context:
        # The domain context is part of every prompt's system message.
        prompts.regenerate_system_prompts(session, project)
    return project


def delete_project(session: Session, ref: str | uuid.UUID) -> None:
    """Delete a project and everything in it (variables, documents, jobs, extractions)."""
    project = get_project(session, ref)
    session.delete(project)
    session.flush()


# ---------------------------------------------------------------- variables


def variable_snapshot(variable: Variable) -> dict[str, Any]:
    """The user-facing definition of a variable, as stored in its revisions."""
    return {
        "name": variable.name,
        "label": variable.label,
        "type": variable.type.value,
        "instructions": variable.instructions,
        "categories": list(variable.categories) if variable.categories else None,
        "category_aliases": dict(variable.category_aliases) if variable.category_aliases
        else None,
        "allow_other": variable.allow_other,
        "multi_select": variable.multi_select,
        "unit": variable.unit,
        "format_hint": variable.format_hint,
        "required": variable.required,
        "position": variable.position,
    }


def _record_revision(session: Session, variable: Variable, change: str) -> None:
    project = variable.project
    session.add(
        VariableRevision(
            variable_id=variable.id,
            version=variable.version,
            schema_version=project.schema_version,
            change=change,
            snapshot=variable_snapshot(variable),
        )
    )


def _ensure_name_free(session: Session, project: Project, name: str, *, exclude=None) -> None:  # type: ignore[no-untyped-def]
    query = select(Variable.id).where(
        Variable.project_id == project.id, Variable.name == name, Variable.deleted_at.is_(None)
    )
    if exclude is not None:
        query = query.where(Variable.id != exclude)
    if session.scalar(query) is not None:
        raise ConflictError(
            f"project '{project.name}' already has a variable named '{name}'", field="name"
        )


def add_variable(
    session: Session, project_ref: str | uuid.UUID | Project, spec: VariableSpec | dict[str, Any]
) -> Variable:
    """Add a variable to the codebook; the project's schema version goes up by one."""
    if isinstance(spec, dict):
        spec = parse_spec(VariableSpec, spec)
    project = project_ref if isinstance(project_ref, Project) else get_project(session, project_ref)
    _ensure_name_free(session, project, spec.name)
    position = spec.position
    if position is None:
        last = session.scalar(
            select(func.max(Variable.position)).where(
                Variable.project_id == project.id, Variable.deleted_at.is_(None)
            )
        )
        position = 0 if last is None else last + 1
    variable = Variable(
        project=project,
        **{f: getattr(spec, f) for f in _VARIABLE_FIELDS if f != "position"},
        position=position,
        version=1,
    )
    session.add(variable)
    project.schema_version += 1
    session.flush()
    _record_revision(session, variable, "created")
    session.flush()
    prompts.generate_prompt(session, variable)
    return variable


def update_variable(
    session: Session,
    project_ref: str | uuid.UUID | Project | None,
    ref: str | uuid.UUID,
    changes: VariableUpdate | dict[str, Any],
) -> Variable:
    """Change a variable. A real change bumps its version and the project's schema version.

    Returns the variable unchanged (same version) when ``changes`` alter nothing, so that
    applying the same codebook twice is a no-op.
    """
    if isinstance(changes, dict):
        changes = parse_spec(VariableUpdate, changes)
    variable = get_variable(session, project_ref, ref)
    requested = changes.model_dump(exclude_unset=True)
    merged = variable_snapshot(variable)
    merged.update({k: (v.value if isinstance(v, VariableType) else v) for k, v in requested.items()})
    new_type = VariableType(merged["type"])
    if new_type is not VariableType.CATEGORY and "type" in requested and "categories" not in requested:
        # Changing a CATEGORY variable to another type drops its category list.
        merged["categories"] = None
        merged["allow_other"] = merged["multi_select"] = False
    if merged["category_aliases"] and "category_aliases" not in requested:
        # Aliases of categories no longer listed (or of a type that has none) go with them.
        kept = {c.casefold() for c in merged["categories"] or []}
        merged["category_aliases"] = {k: v for k, v in merged["category_aliases"].items()
                                      if k.casefold() in kept} or None
    _VariableRules.check_type_fields(
        new_type, merged["categories"], merged["allow_other"], merged["multi_select"]
    )
    if merged["category_aliases"] and new_type is not VariableType.CATEGORY:
        raise ValidationError(f"category_aliases are only for CATEGORY variables, not "
                              f"{new_type.value}", field="category_aliases")
    check_aliases_fit(merged["categories"], merged["category_aliases"])
    before = variable_snapshot(variable)
    if merged == before:
        return variable
    if merged["name"] != variable.name:
        _ensure_name_free(session, variable.project, merged["name"], exclude=variable.id)
    for field in _VARIABLE_FIELDS:
        value = merged[field]
        setattr(variable, field, VariableType(value) if field == "type" else value)
    variable.version += 1
    variable.project.schema_version += 1
    session.flush()
    _record_revision(session, variable, "updated")
    session.flush()
    prompts.regenerate_after_update(session, variable, before)
    return variable


def delete_variable(
    session: Session, project_ref: str | uuid.UUID | Project | None, ref: str | uuid.UUID
) -> Variable:
    """Soft-delete: the variable disappears from the codebook, its history and results stay."""
    variable = get_variable(session, project_ref, ref)
    variable.deleted_at = utcnow()
    variable.version += 1
    variable.project.schema_version += 1
    session.flush()
    _record_revision(session, variable, "deleted")
    session.flush()
    return variable


def variable_history(
    session: Session, project_ref: str | uuid.UUID | Project, name: str
) -> list[VariableRevision]:
    """Every revision of every variable ever named ``name`` in the project, oldest first."""
    project = project_ref if isinstance(project_ref, Project) else get_project(session, project_ref)
    ids = list(
        session.scalars(
            select(Variable.id).where(Variable.project_id == project.id, Variable.name == name)
        )
    )
    by_revision_name = select(VariableRevision.variable_id).where(
        VariableRevision.snapshot["name"].as_string() == name
    )
    ids += [i for i in session.scalars(by_revision_name) if i not in ids]
    if not ids:
        raise NotFoundError(f"project '{project.name}' never had a variable '{name}'",
                            field="name", instance=name)
    query = (
        select(VariableRevision)
        .join(Variable, Variable.id == VariableRevision.variable_id)
        .where(VariableRevision.variable_id.in_(ids), Variable.project_id == project.id)
        .order_by(VariableRevision.created_at, VariableRevision.version)
    )
    return list(session.scalars(query))


# ---------------------------------------------------------------- views


def variable_to_dict(variable: Variable) -> dict[str, Any]:
    """A JSON-ready view of a variable (what ``--json`` prints)."""
    return {
        "id": str(variable.id),
        **variable_snapshot(variable),
        "version": variable.version,
        "deleted_at": variable.deleted_at.isoformat() if variable.deleted_at else None,
    }


def project_to_dict(
    project: Project, variables: list[Variable] | None = None
) -> dict[str, Any]:
    """A JSON-ready view of a project, with its variables when given."""
    data: dict[str, Any] = {
        "id": str(project.id),
        "name": project.name,
        "description": project.description,
        "domain_context": project.domain_context,
        "schema_version": project.schema_version,
        "settings": project.settings or {},
        "created_at": project.created_at.isoformat() if project.created_at else None,
        "updated_at": project.updated_at.isoformat() if project.updated_at else None,
    }
    if variables is not None:
        data["variables"] = [variable_to_dict(v) for v in variables]
    return data
