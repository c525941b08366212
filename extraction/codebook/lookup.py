"""Finding projects and variables: the read side of the codebook.

Kept apart from the writes (``service.py``) because prompts need these look-ups while the
writes need prompts (a new variable gets its generated prompt): splitting them is what keeps
the import graph free of cycles.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from extraction.errors import NotFoundError, ValidationError
from extraction.models import Project, Variable

__all__ = ["count_projects", "get_project", "get_variable", "list_projects", "list_variables"]


def _as_uuid(ref: str | uuid.UUID) -> uuid.UUID | None:
    if isinstance(ref, uuid.UUID):
        return ref
    try:
        return uuid.UUID(str(ref))
    except ValueError:
        return None


def get_project(session: Session, ref: str | uuid.UUID) -> Project:
    """A project by id or by name."""
    as_id = _as_uuid(ref)
    project = session.get(Project, as_id) if as_id else None
    if project is None:
        project = session.scalar(select(Project).where(Project.name == str(ref)))
    if project is None:
        raise NotFoundError(f"no project with id or name '{ref}'", instance=str(ref))
    return project


def list_projects(session: Session, *, limit: int = 50, offset: int = 0) -> list[Project]:
    """Projects by name, one page at a time."""
    if limit < 1 or offset < 0:
        raise ValidationError("limit must be ≥ 1 and offset ≥ 0", field="limit")
    query = select(Project).order_by(Project.name).limit(limit).offset(offset)
    return list(session.scalars(query))


def count_projects(session: Session) -> int:
    return session.scalar(select(func.count(Project.id))) or 0


def list_variables(
    session: Session, project_ref: str | uuid.UUID | Project, *, include_deleted: bool = False
) -> list[Variable]:
    """The project's variables in codebook order (live ones unless asked otherwise)."""
    project = project_ref if isinstance(project_ref, Project) else get_project(session, project_ref)
    query = select(Variable).where(Variable.project_id == project.id)
    if not include_deleted:
        query = query.where(Variable.deleted_at.is_(None))
    return list(session.scalars(query.order_by(Variable.position, Variable.created_at)))


def get_variable(
    session: Session, project_ref: str | uuid.UUID | Project | None, ref: str | uuid.UUID
) -> Variable:
    """A live variable by id, or by name within a project."""
    as_id = _as_uuid(ref)
    if as_id is not None:
        variable = session.get(Variable, as_id)
        if variable is not None and variable.deleted_at is None:
            return variable
    if project_ref is not None:
        project = (project_ref if isinstance(project_ref, Project)
                   else get_project(session, project_ref))
        variable = session.scalar(
            select(Variable).where(
                Variable.project_id == project.id,
                Variable.name == str(ref),
                Variable.deleted_at.is_(None),
            )
        )
        if variable is not None:
            return variable
        raise NotFoundError(
            f"project '{project.name}' has no variable '{ref}'", field="name", instance=str(ref)
        )
    raise NotFoundError(f"no variable with id '{ref}'", instance=str(ref))
