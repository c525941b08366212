"""`extractflow project …`: create, list, show, update and delete projects."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from extraction import codebook
from extraction.cli._common import JsonOption, console, db_session, emit_json, new_app, table

app = new_app("Projects: a codebook of typed variables and the documents it applies to.")

DescriptionOpt = Annotated[Optional[str], typer.Option("--description", "-d")]
ContextOpt = Annotated[
    Optional[str],
    typer.Option("--context", "-c", help="Domain context given to every prompt."),
]


@app.command("create")
def create(
    name: str,
    description: DescriptionOpt = None,
    context: ContextOpt = None,
    json_out: JsonOption = False,
) -> None:
    """Create a project (the name must be unique)."""
    with db_session() as s:
        project = codebook.create_project(
            s, {"name": name, "description": description or "", "domain_context": context or ""}
        )
        data = codebook.project_to_dict(project)
    if json_out:
        emit_json(data)
    else:
        console.print(f"Created project [bold]{data['name']}[/] ({data['id']})")


@app.command("list")
def list_(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    json_out: JsonOption = False,
) -> None:
    """List projects, a page at a time."""
    with db_session() as s:
        projects = codebook.list_projects(s, limit=limit, offset=offset)
        total = codebook.count_projects(s)
        rows = [
            {**codebook.project_to_dict(p), "variables": len(codebook.list_variables(s, p))}
            for p in projects
        ]
    if json_out:
        emit_json({"total": total, "limit": limit, "offset": offset, "items": rows})
        return
    t = table("name", "id", "variables", "schema", "description",
              title=f"Projects {offset + 1}–{offset + len(rows)} of {total}")
    for r in rows:
        t.add_row(r["name"], r["id"], str(r["variables"]), f"v{r['schema_version']}",
                  r["description"][:60])
    console.print(t)


@app.command("show")
def show(project: str, json_out: JsonOption = False) -> None:
    """Show a project with its live variables and current schema version."""
    with db_session() as s:
        p = codebook.get_project(s, project)
        data = codebook.project_to_dict(p, codebook.list_variables(s, p))
    if json_out:
        emit_json(data)
        return
    console.print(f"[bold]{data['name']}[/]  id {data['id']}  schema v{data['schema_version']}")
    if data["description"]:
        console.print(data["description"], markup=False)
    if data["domain_context"]:
        console.print(f"[dim]context:[/] {data['domain_context']}")
    t = table("#", "name", "type", "label", "details", "v")
    for i, v in enumerate(data["variables"], 1):
        details = ", ".join(v["categories"]) if v["categories"] else (v["unit"] or "")
        t.add_row(str(i), v["name"], v["type"], v["label"], details, str(v["version"]))
    console.print(t)


@app.command("update")
def update(
    project: str,
    name: Annotated[Optional[str], typer.Option("--name", help="New name.")] = None,
    description: DescriptionOpt = None,
    context: ContextOpt = None,
    json_out: JsonOption = False,
) -> None:
    """Rename a project or change its description or domain context."""
    changes = {k: v for k, v in
               {"name": name, "description": description, "domain_context": context}.items()
               if v is not None}
    with db_session() as s:
        data = codebook.project_to_dict(codebook.update_project(s, project, changes))
    if json_out:
        emit_json(data)
    else:
        console.print(f"Updated project [bold]{data['name']}[/]")


@app.command("delete")
def delete(
    project: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Delete a project with all its variables, documents, jobs and results."""
    with db_session() as s:
        p = codebook.get_project(s, project)
        name, pid = p.name, str(p.id)
    if not yes:
        typer.confirm(
            f"Delete project '{name}' and all its documents, jobs and results?", abort=True
        )
    with db_session() as s:
        codebook.delete_project(s, pid)
    if json_out:
        emit_json({"deleted": pid, "name": name})
    else:
        console.print(f"Deleted project [bold]{name}[/]")
