"""The declarative codebook file (YAML): load with line-accurate errors, apply, export.

A codebook file is the whole truth about a project: applying it creates the project or brings
it in line (new variables added, changed ones updated, missing ones soft-deleted) and reports
the difference; applying it again changes nothing. Errors name the line and the field, because
a researcher editing a 40-variable codebook needs to know where to look.

Format::

    project:
      name: clinical-trials
      description: ...
      domain_context: |
        ...
      settings: {mode: per_document}
    variables:
      - name: phase
        type: CATEGORY
        label: Trial phase
        instructions: ...
        categories: [Phase 1, Phase 2]
      - name: sponsor_type
        type: CATEGORY
        categories:                     # a category may carry aliases: other words that
          - label: Industry             # name it, read by the value–quote check and by
            aliases: [pharmaceutical company, biotech company]   # value normalisation
          - Academic
        # (the same as: category_aliases: {Industry: [pharmaceutical company, ...]})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.orm import Session

from extraction import codebook
from extraction.codebook.specs import ProjectSpec, VariableSpec, parse_spec
from extraction.errors import NotFoundError, ValidationError
from extraction.input_files import read_text_limited
from extraction.models import Project

__all__ = ["Change", "Codebook", "apply_codebook", "export_codebook", "load_codebook"]


@dataclass(frozen=True)
class Codebook:
    project: ProjectSpec
    variables: list[VariableSpec]


@dataclass(frozen=True)
class Change:
    """One line of the diff that applying a codebook makes (or would make, with dry-run)."""

    action: str  # create-project / update-project / add / update / delete / unchanged
    target: str
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def describe(self) -> str:
        if not self.fields:
            return f"{self.action} {self.target}"
        parts = ", ".join(f"{k}: {old!r} → {new!r}" for k, (old, new) in self.fields.items())
        return f"{self.action} {self.target} ({parts})"


def _node_at(node: yaml.Node | None, path: list[str]) -> yaml.Node | None:
    """The YAML node for a dotted path like ``variables.2.type``, as far as it exists.

    A mapping key that exists points at the key's own line; a missing one at the mapping
    that should have held it.
    """
    current = node
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        if isinstance(current, yaml.MappingNode):
            pair = next(((k, v) for k, v in current.value if k.value == part), None)
            if pair is None:
                return current
            current = pair[0] if last else pair[1]
        elif isinstance(current, yaml.SequenceNode) and part.isdigit() \
                and int(part) < len(current.value):
            current = current.value[int(part)]
        else:
            break
    return current


def _with_line(error: ValidationError, root: yaml.Node | None, source: str) -> ValidationError:
    node = _node_at(root, (error.field or "").split(".")) if error.field else root
    line = node.start_mark.line + 1 if node is not None else None
    where = f"{source}, line {line}" if line else source
    error.detail = f"{where}: {error.detail}"
    error.instance = source
    if line:
        error.extra["line"] = line
    return error


def _check_expansion(root: yaml.Node | None, name: str, limit: int) -> None:
    """Refuse a document whose aliases expand past ``limit`` nodes, or refer to themselves.

    YAML aliases share one node, so a few lines (``a: &a [*b, *b, …]`` nested) can stand for
    billions of values once stored as JSON; the composed graph is measured with the
    expansion counted, each shared node once per use.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise ValidationError(f"{name}: a YAML alias refers to itself", instance=name)
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > limit:
                break
        open_nodes.discard(key)
        sizes[key] = total
        if total > limit:
            line = node.start_mark.line + 1
            raise ValidationError(
                f"{name}, line {line}: the YAML expands to more than {limit:,} values "
                "(aliases repeated inside aliases); write the values out, or raise "
                "EXTRACTFLOW_MAX_YAML_NODES", instance=name, extra={"line": line})
        return total

    if root is not None:
        size(root)


def load_codebook(source: str | Path, *, text: str | None = None) -> Codebook:
    """Parse and validate a codebook file; errors carry the line and the field."""
    name = str(source)
    from config.settings import get_settings

    settings = get_settings()
    if text is None:
        text = read_text_limited(source, limit=settings.max_input_file_bytes,
                                 what="codebook file")
    try:
        root = yaml.compose(text)
        _check_expansion(root, name, settings.max_yaml_nodes)
        data = yaml.safe_load(text)
    except RecursionError:
        raise ValidationError(f"{name}: the YAML is nested too deeply", instance=name) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ValidationError(f"{name}{line}: malformed YAML: {problem}", instance=name,
                              extra={"line": mark.line + 1} if mark else None) from exc
    if not isinstance(data, dict):
        raise ValidationError(f"{name}: a codebook is a mapping with 'project' and 'variables'",
                              instance=name)
    unknown = set(data) - {"project", "variables"}
    if unknown:
        err = ValidationError(f"unknown top-level key '{sorted(unknown)[0]}'",
                              field=sorted(unknown)[0])
        raise _with_line(err, root, name)
    if not isinstance(data.get("project"), dict):
        raise _with_line(ValidationError("'project' must be a mapping with at least a name",
                                         field="project"), root, name)
    raw_vars = data.get("variables") or []
    if not isinstance(raw_vars, list):
        raise _with_line(ValidationError("'variables' must be a list", field="variables"),
                         root, name)
    try:
        project = parse_spec(ProjectSpec, data["project"], prefix="project")
        variables: list[VariableSpec] = []
        seen: dict[str, int] = {}
        for index, raw in enumerate(raw_vars):
            prefix = f"variables.{index}"
            if not isinstance(raw, dict):
                raise ValidationError("each variable must be a mapping", field=prefix)
            spec = parse_spec(VariableSpec, {**raw, "position": index}, prefix=prefix)
            if spec.name in seen:
                raise ValidationError(
                    f"variable '{spec.name}' is defined twice (also variable {seen[spec.name] + 1})",
                    field=f"{prefix}.name",
                )
            seen[spec.name] = index
            variables.append(spec)
    except ValidationError as exc:
        raise _with_line(exc, root, name) from exc
    return Codebook(project=project, variables=variables)


def _differences(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (before.get(k), v) for k, v in after.items() if before.get(k) != v}


def apply_codebook(session: Session, book: Codebook, *, dry_run: bool = False) -> list[Change]:
    """Bring the project in line with ``book``; return the changes (nothing written if dry-run).

    With ``dry_run`` the changes are made and then the session's whole transaction is rolled
    back, so the diff shown is exactly what a real apply would do. (Not a SAVEPOINT: SQLite's
    Python driver does not support them reliably.) Give it a session of its own.
    """
    changes: list[Change] = []
    try:
        try:
            project = codebook.get_project(session, book.project.name)
        except NotFoundError:
            project = codebook.create_project(session, book.project)
            changes.append(Change("create-project", book.project.name))
        else:
            wanted = book.project.model_dump()
            current = {k: getattr(project, k) for k in wanted}
            diff = _differences(current, wanted)
            if diff:
                codebook.update_project(session, project, diff_to_update(diff))
                changes.append(Change("update-project", project.name, diff))
        existing = {v.name: v for v in codebook.list_variables(session, project)}
        for spec in book.variables:
            wanted = spec.model_dump(mode="json")
            if spec.name not in existing:
                codebook.add_variable(session, project, spec)
                changes.append(Change("add", spec.name))
                continue
            variable = existing.pop(spec.name)
            diff = _differences(codebook.variable_snapshot(variable), wanted)
            if diff:
                codebook.update_variable(session, project, variable.id,
                                         {k: new for k, (_, new) in diff.items()})
                changes.append(Change("update", spec.name, diff))
        for name in existing:
            codebook.delete_variable(session, project, name)
            changes.append(Change("delete", name))
    except BaseException:
        session.rollback()
        raise
    if dry_run:
        session.rollback()
    return changes


def diff_to_update(diff: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    return {k: new for k, (_, new) in diff.items()}


def export_codebook(session: Session, project_ref: str | Project) -> str:
    """The project as a codebook file that :func:`apply_codebook` would leave unchanged."""
    project = (project_ref if isinstance(project_ref, Project)
               else codebook.get_project(session, project_ref))
    variables = []
    for v in codebook.list_variables(session, project):
        snap = codebook.variable_snapshot(v)
        snap.pop("position")
        defaults = {"label": snap["name"].replace("_", " ").capitalize(), "instructions": "",
                    "categories": None, "category_aliases": None, "allow_other": False, "multi_select": False,
                    "unit": None, "format_hint": None, "required": False}
        variables.append({k: val for k, val in snap.items()
                          if k in ("name", "type") or defaults.get(k, object()) != val})
    document = {
        "project": {
            "name": project.name,
            "description": project.description,
            "domain_context": project.domain_context,
            **({"settings": project.settings} if project.settings else {}),
        },
        "variables": variables,
    }
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
