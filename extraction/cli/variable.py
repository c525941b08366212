"""`extractflow variable …`: the typed variables of a project's codebook."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from extraction import codebook
from extraction.cli._common import JsonOption, console, db_session, emit_json, new_app, table

app = new_app("Variables: the typed fields to extract (TEXT, CATEGORY, NUMBER, DATE, BOOLEAN).")

TypeOpt = Annotated[Optional[str], typer.Option("--type", "-t",
                    help="TEXT, CATEGORY, NUMBER, DATE or BOOLEAN.")]
LabelOpt = Annotated[Optional[str], typer.Option("--label", "-l")]
InstructionsOpt = Annotated[Optional[str], typer.Option("--instructions", "-i",
                            help="What to extract, in plain words.")]
CategoryOpt = Annotated[Optional[list[str]], typer.Option("--category", "-C",
                        help="A category (repeat for each).")]
AliasOpt = Annotated[Optional[list[str]], typer.Option(
    "--alias", "-A", metavar="CATEGORY=ALIAS",
    help="Another word that names a category, e.g. 'Industry=pharmaceutical company' "
         "(repeat for each; on update, replaces every alias).")]
AllowOtherOpt = Annotated[Optional[bool], typer.Option("--allow-other/--no-allow-other",
                          help="CATEGORY: allow 'other' when nothing fits.")]
MultiOpt = Annotated[Optional[bool], typer.Option("--multi-select/--single-select",
                     help="CATEGORY: several categories may apply.")]
UnitOpt = Annotated[Optional[str], typer.Option("--unit", help="NUMBER: the unit to report in.")]
FormatOpt = Annotated[Optional[str], typer.Option("--format", help="Format hint.")]
RequiredOpt = Annotated[Optional[bool], typer.Option("--required/--optional")]
PositionOpt = Annotated[Optional[int], typer.Option("--position", help="Order in the codebook.")]


def _collect(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _aliases(options: list[str] | None) -> dict[str, list[str]] | None:
    """``--alias 'Industry=pharmaceutical company'`` options as ``{label: [alias, …]}``."""
    if not options:
        return None
    from extraction.errors import ValidationError

    out: dict[str, list[str]] = {}
    for option in options:
        label, sep, alias = option.partition("=")
        if not sep or not label.strip() or not alias.strip():
            raise ValidationError(f"--alias {option!r}: write CATEGORY=ALIAS, e.g. "
                                  "'Industry=pharmaceutical company'", field="category_aliases")
        out.setdefault(label.strip(), []).append(alias.strip())
    return out


@app.command("add")
def add(
    project: str,
    name: str,
    type_: TypeOpt = None,
    label: LabelOpt = None,
    instructions: InstructionsOpt = None,
    category: CategoryOpt = None,
    alias: AliasOpt = None,
    allow_other: AllowOtherOpt = None,
    multi_select: MultiOpt = None,
    unit: UnitOpt = None,
    format_hint: FormatOpt = None,
    required: RequiredOpt = None,
    position: PositionOpt = None,
    json_out: JsonOption = False,
) -> None:
    """Add a variable; the project's schema version goes up by one."""
    spec = _collect(name=name, type=type_, label=label, instructions=instructions,
                    categories=category or None, category_aliases=_aliases(alias),
                    allow_other=allow_other,
                    multi_select=multi_select, unit=unit, format_hint=format_hint,
                    required=required, position=position)
    with db_session() as s:
        variable = codebook.add_variable(s, project, spec)
        data = codebook.variable_to_dict(variable)
        schema = variable.project.schema_version
    if json_out:
        emit_json({**data, "schema_version": schema})
    else:
        console.print(f"Added {data['type']} variable [bold]{data['name']}[/] "
                      f"(schema v{schema})")


@app.command("list")
def list_(
    project: str,
    deleted: Annotated[bool, typer.Option("--deleted", help="Include deleted variables.")] = False,
    json_out: JsonOption = False,
) -> None:
    """List a project's variables in codebook order."""
    with db_session() as s:
        rows = [codebook.variable_to_dict(v)
                for v in codebook.list_variables(s, project, include_deleted=deleted)]
    if json_out:
        emit_json(rows)
        return
    t = table("name", "type", "label", "categories / unit", "required", "v", "deleted")
    for v in rows:
        t.add_row(v["name"], v["type"], v["label"],
                  ", ".join(v["categories"] or []) or (v["unit"] or ""),
                  "yes" if v["required"] else "", str(v["version"]),
                  (v["deleted_at"] or "")[:19])
    console.print(t)


@app.command("show")
def show(project: str, name: str, json_out: JsonOption = False) -> None:
    """Show one variable's definition."""
    with db_session() as s:
        data = codebook.variable_to_dict(codebook.get_variable(s, project, name))
    if json_out:
        emit_json(data)
        return
    for key, value in data.items():
        if value not in (None, "", False):
            console.print(f"[bold]{key}[/]: {value}", markup=True, highlight=False)


@app.command("update")
def update(
    project: str,
    name: str,
    new_name: Annotated[Optional[str], typer.Option("--name", help="Rename the variable.")] = None,
    type_: TypeOpt = None,
    label: LabelOpt = None,
    instructions: InstructionsOpt = None,
    category: CategoryOpt = None,
    alias: AliasOpt = None,
    allow_other: AllowOtherOpt = None,
    multi_select: MultiOpt = None,
    unit: UnitOpt = None,
    format_hint: FormatOpt = None,
    required: RequiredOpt = None,
    position: PositionOpt = None,
    json_out: JsonOption = False,
) -> None:
    """Change a variable; a real change bumps its version and the schema version."""
    changes = _collect(name=new_name, type=type_, label=label, instructions=instructions,
                       categories=category or None, category_aliases=_aliases(alias),
                       allow_other=allow_other,
                       multi_select=multi_select, unit=unit, format_hint=format_hint,
                       required=required, position=position)
    with db_session() as s:
        variable = codebook.update_variable(s, project, name, changes)
        data = codebook.variable_to_dict(variable)
        schema = variable.project.schema_version
    if json_out:
        emit_json({**data, "schema_version": schema})
    else:
        console.print(f"Variable [bold]{data['name']}[/] is at v{data['version']} "
                      f"(schema v{schema})")


@app.command("delete")
def delete(project: str, name: str, json_out: JsonOption = False) -> None:
    """Remove a variable from the codebook; its history and past results stay."""
    with db_session() as s:
        variable = codebook.delete_variable(s, project, name)
        data = codebook.variable_to_dict(variable)
        schema = variable.project.schema_version
    if json_out:
        emit_json({**data, "schema_version": schema})
    else:
        console.print(f"Deleted variable [bold]{name}[/] (schema v{schema}); history kept")


@app.command("history")
def history(project: str, name: str, json_out: JsonOption = False) -> None:
    """Every version of a variable: what changed and when."""
    with db_session() as s:
        rows = [
            {"version": r.version, "schema_version": r.schema_version, "change": r.change,
             "at": r.created_at.isoformat(), **r.snapshot}
            for r in codebook.variable_history(s, project, name)
        ]
    if json_out:
        emit_json(rows)
        return
    t = table("v", "schema", "change", "at", "type", "label", "instructions / categories")
    for r in rows:
        t.add_row(str(r["version"]), str(r["schema_version"]), r["change"], r["at"][:19],
                  r["type"], r["label"],
                  (", ".join(r["categories"]) if r["categories"] else r["instructions"])[:60])
    console.print(t)
