"""Prompt versions as service functions: generate, look up, edit by hand, keep history.

Each variable has prompt versions 1, 2, 3… and exactly one current one (a partial unique index
enforces it). Versions are never changed or deleted once written: a new definition, a manual
edit, a refinement or a new project context each adds a version whose ``parent`` is the version
it replaced, so ``prompt history`` and ``prompt diff`` show how a prompt came to be and jobs
can point at the exact text they ran with.

What each change does:

* a new variable → v1, generated;
* a variable update that changes the rendered block (not e.g. only its position) → a new
  generated version; the temperature and worked examples carry over (the examples are dropped
  when the type or the categories change, since their values may no longer fit);
* a changed project domain context → every live variable gets a new version with the new
  system message and its current block kept as is (so manual and refined blocks survive);
* ``set_manual_prompt`` → a manual version; ``create_prompt_version`` → any origin (refinement).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from extraction.codebook.lookup import get_project, get_variable, list_variables
from extraction.errors import NotFoundError, ValidationError
from extraction.models import Project, Prompt, PromptOrigin, Variable, VariableType
from extraction.prompts.templates import (
    DEFAULT_TEMPERATURE,
    build_prompt,
    check_max_tokens,
    check_temperature,
    normalize_example,
    render_block,
    render_system,
)
from extraction.run.results import VariableInfo, alias_pairs

__all__ = [
    "create_prompt_version",
    "current_prompt",
    "find_variable",
    "generate_prompt",
    "get_prompt_version",
    "prompt_history",
    "regenerate_after_update",
    "regenerate_system_prompts",
    "set_manual_prompt",
]

_DELIMITER_MARKERS = ("<document", "</document")


def _current(session: Session, variable_id: uuid.UUID) -> Prompt | None:
    return session.scalar(
        select(Prompt).where(Prompt.variable_id == variable_id, Prompt.is_current.is_(True))
    )


def _clean_text(text: str, field: str) -> str:
    cleaned = text.replace("\r\n", "\n").strip()
    if not cleaned:
        raise ValidationError(f"{field} must not be empty", field=field)
    return cleaned


def create_prompt_version(
    session: Session,
    variable: Variable,
    *,
    system_template: str,
    user_template: str,
    origin: PromptOrigin | str,
    parent: Prompt | None,
    rationale: str,
    examples: Sequence[Mapping[str, Any]] = (),
    temperature: float = DEFAULT_TEMPERATURE,
    max_tokens: int,
    model: str | None = None,
) -> Prompt:
    """Store a new current prompt version of ``variable`` and retire the previous current one.

    Args:
        session: the database session (flushed, not committed).
        variable: the variable the prompt belongs to.
        system_template: the complete system message, fully rendered.
        user_template: the variable's instruction block, fully rendered; it must not contain
            the document delimiters (the document is appended by the LLM layer).
        origin: generated, refined or manual.
        parent: the version this one replaces (usually the current one), or None for v1.
        rationale: why this version exists, shown by ``prompt history``.
        examples: worked examples stored with the version (already rendered into the block).
        temperature: 0 … 0.2.
        max_tokens: the answer budget of this variable.
        model: a model for this prompt only; None uses the run's model.

    Raises:
        ValidationError: empty text, delimiters in the block, temperature or max_tokens out of
            range.
    """
    system_template = _clean_text(system_template, "system_template")
    user_template = _clean_text(user_template, "user_template")
    lowered = user_template.lower()
    if any(marker in lowered for marker in _DELIMITER_MARKERS):
        raise ValidationError(
            "the instruction block must not contain <document> tags: the document is added "
            "after the blocks by the extractor", field="user_template")
    temperature = check_temperature(temperature)
    max_tokens = check_max_tokens(max_tokens)
    stored_examples = [normalize_example(e) for e in examples]
    # Serialise version numbering per variable (a no-op on SQLite, whose writes are serial).
    session.execute(select(Variable.id).where(Variable.id == variable.id).with_for_update())
    last = session.scalar(select(func.max(Prompt.version)).where(Prompt.variable_id == variable.id))
    previous = _current(session, variable.id)
    if previous is not None:
        # The partial unique index allows one current row: retire the old one first.
        previous.is_current = False
        session.flush()
    prompt = Prompt(
        variable=variable,
        version=(last or 0) + 1,
        variable_version=variable.version,
        system_template=system_template,
        user_template=user_template,
        examples=stored_examples,
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,
        origin=PromptOrigin(origin),
        parent_id=parent.id if parent is not None else None,
        rationale=rationale,
        is_current=True,
    )
    session.add(prompt)
    session.flush()
    return prompt


def _same_prompt(prompt: Prompt, **fields: Any) -> bool:
    return all(getattr(prompt, key) == value for key, value in fields.items())


def generate_prompt(
    session: Session,
    variable: Variable,
    *,
    origin: PromptOrigin | str = PromptOrigin.GENERATED,
    rationale: str = "generated from the variable definition",
    examples: Sequence[Mapping[str, Any]] | None = None,
    temperature: float | None = None,
) -> Prompt:
    """Render the variable's prompt from its definition and store it as the new current version.

    Examples and temperature default to the current version's. When the rendered prompt is
    identical to the current version, nothing is stored and the current version is returned.
    """
    current = _current(session, variable.id)
    if examples is None:
        examples = list(current.examples or []) if current is not None else []
    if temperature is None:
        temperature = current.temperature if current is not None else DEFAULT_TEMPERATURE
    draft = build_prompt(variable, variable.project.domain_context,
                         examples=examples, temperature=temperature)
    if current is not None and _same_prompt(
        current, system_template=draft.system_template, user_template=draft.user_template,
        temperature=draft.temperature, max_tokens=draft.max_tokens,
    ):
        return current
    return create_prompt_version(
        session, variable,
        system_template=draft.system_template, user_template=draft.user_template,
        origin=origin, parent=current, rationale=rationale, examples=draft.examples,
        temperature=draft.temperature, max_tokens=draft.max_tokens,
        model=current.model if current is not None else None,
    )


def current_prompt(session: Session, variable: Variable) -> Prompt:
    """The current prompt version of ``variable``.

    A variable created before prompts existed has none; it gets v1 generated here, so a run
    never meets a variable without a prompt.
    """
    prompt = _current(session, variable.id)
    if prompt is None:
        prompt = generate_prompt(session, variable,
                                 rationale="generated on first use (the variable had no prompt)")
    return prompt


def find_variable(session: Session, project: str | uuid.UUID | Project, name: str) -> Variable:
    """The live variable ``name`` of the project, else its most recently deleted namesake.

    History and old versions stay readable after a variable is deleted.
    """
    project_row = (project if isinstance(project, Project)
                   else get_project(session, project))
    try:
        return get_variable(session, project_row, name)
    except NotFoundError:
        deleted = session.scalar(
            select(Variable)
            .where(Variable.project_id == project_row.id, Variable.name == name)
            .order_by(Variable.deleted_at.desc())
            .limit(1)
        )
        if deleted is None:
            raise
        return deleted


def prompt_history(
    session: Session, project: str | uuid.UUID | Project, variable_name: str
) -> list[Prompt]:
    """Every prompt version of a variable, oldest first."""
    variable = find_variable(session, project, variable_name)
    if variable.is_live:
        current_prompt(session, variable)
    query = select(Prompt).where(Prompt.variable_id == variable.id).order_by(Prompt.version)
    return list(session.scalars(query))


def get_prompt_version(
    session: Session,
    project: str | uuid.UUID | Project,
    variable_name: str,
    version: int | None = None,
) -> Prompt:
    """One prompt version of a variable (the current one when ``version`` is None)."""
    variable = find_variable(session, project, variable_name)
    if version is None:
        if variable.is_live:
            return current_prompt(session, variable)
        latest = session.scalar(select(Prompt).where(Prompt.variable_id == variable.id)
                                .order_by(Prompt.version.desc()).limit(1))
        if latest is None:
            raise NotFoundError(f"deleted variable '{variable_name}' has no prompt",
                                field="variable", instance=variable_name)
        return latest
    prompt = session.scalar(
        select(Prompt).where(Prompt.variable_id == variable.id, Prompt.version == version)
    )
    if prompt is None:
        versions = list(session.scalars(select(Prompt.version)
                                        .where(Prompt.variable_id == variable.id)
                                        .order_by(Prompt.version)))
        known = f"versions 1–{versions[-1]}" if versions else "no versions yet"
        raise NotFoundError(
            f"variable '{variable_name}' has no prompt version {version} ({known})",
            field="version", instance=str(version))
    return prompt


def set_manual_prompt(
    session: Session,
    project: str | uuid.UUID | Project,
    variable_name: str,
    *,
    user_template: str | None = None,
    system_template: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    rationale: str = "manual edit",
) -> Prompt:
    """A hand-written change to the current prompt, stored as a new ``manual`` version.

    Fields left as None keep the current version's value. When nothing differs from the
    current version, no version is added and the current one is returned.

    Raises:
        ValidationError: nothing to change was given, or a value breaks a rule (temperature
            above 0.2, empty text, delimiters in the block).
        NotFoundError: no such project or live variable.
    """
    if user_template is None and system_template is None and temperature is None \
            and max_tokens is None:
        raise ValidationError("nothing to change: give a block, a system message, a temperature "
                              "or max_tokens", field="user_template")
    variable = get_variable(session, project, variable_name)
    current = current_prompt(session, variable)
    new = {
        "system_template": (_clean_text(system_template, "system_template")
                            if system_template is not None else current.system_template),
        "user_template": (_clean_text(user_template, "user_template")
                          if user_template is not None else current.user_template),
        "temperature": (check_temperature(temperature) if temperature is not None
                        else current.temperature),
        "max_tokens": (check_max_tokens(max_tokens) if max_tokens is not None
                       else current.max_tokens),
    }
    if _same_prompt(current, **new):
        return current
    return create_prompt_version(
        session, variable, origin=PromptOrigin.MANUAL, parent=current,
        rationale=rationale.strip() or "manual edit", examples=current.examples or [],
        model=current.model, **new,
    )


def _info_from_snapshot(variable: Variable, snapshot: Mapping[str, Any]) -> VariableInfo:
    return VariableInfo(
        id=variable.id, name=snapshot["name"], label=snapshot.get("label") or "",
        type=VariableType(snapshot["type"]), instructions=snapshot.get("instructions") or "",
        categories=tuple(snapshot["categories"]) if snapshot.get("categories") else None,
        category_aliases=alias_pairs(snapshot.get("category_aliases")),
        allow_other=bool(snapshot.get("allow_other")),
        multi_select=bool(snapshot.get("multi_select")),
        unit=snapshot.get("unit"), format_hint=snapshot.get("format_hint"),
        required=bool(snapshot.get("required")),
    )


def regenerate_after_update(
    session: Session, variable: Variable, before: Mapping[str, Any]
) -> Prompt | None:
    """After a variable update, a new generated version if its block would change.

    ``before`` is the variable's snapshot before the update. A change that does not alter the
    rendered block (its position in the codebook, say) adds no version, so a manual or refined
    prompt is not overwritten for nothing. Returns the new version, or None.
    """
    current = _current(session, variable.id)
    if current is None:
        return generate_prompt(session, variable)
    previous = _info_from_snapshot(variable, before)
    if render_block(previous) == render_block(variable):
        return None
    changed = [k for k in ("type", "categories") if before.get(k) != _snapshot_value(variable, k)]
    examples = [] if changed else list(current.examples or [])
    fields = [k for k, v in before.items()
              if k != "position" and v != _snapshot_value(variable, k)]
    rationale = (f"regenerated: the variable's {', '.join(fields)} changed "
                 f"(variable v{variable.version})")
    if changed and current.examples:
        rationale += f"; worked examples dropped because its {' and '.join(changed)} changed"
    return generate_prompt(session, variable, rationale=rationale, examples=examples)


def _snapshot_value(variable: Variable, key: str) -> Any:
    value = getattr(variable, key)
    if key == "type":
        return VariableType(value).value
    if key == "categories":
        return list(value) if value else None
    return value


def regenerate_system_prompts(
    session: Session, project: Project, *, rationale: str = "project domain context changed"
) -> list[Prompt]:
    """Give every live variable a version with the project's current system message.

    The domain context is part of the system message. Each variable keeps its current block,
    examples and configuration; only the system message is re-rendered. Returns the new
    versions (variables already up to date get none).
    """
    system = render_system(project.domain_context)
    created = []
    for variable in list_variables(session, project):
        current = current_prompt(session, variable)
        if current.system_template == system:
            continue
        created.append(create_prompt_version(
            session, variable, system_template=system, user_template=current.user_template,
            origin=PromptOrigin.GENERATED, parent=current,
            rationale=f"system message regenerated: {rationale}; block kept from "
                      f"v{current.version}",
            examples=current.examples or [], temperature=current.temperature,
            max_tokens=current.max_tokens, model=current.model,
        ))
    return created
