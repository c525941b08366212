"""`extractflow prompt …`: see, compare and hand-edit the versioned prompt of each variable."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from extraction import prompts
from extraction.cli._common import JsonOption, console, db_session, emit_json, new_app, table
from extraction.errors import ConfigError, ValidationError

app = new_app("Prompts: one versioned prompt per variable (show, history, diff, edit, set).")

VersionOpt = Annotated[int | None, typer.Option("--version", "-V",
                       help="A version number (default: the current one).")]
RationaleOpt = Annotated[str | None, typer.Option("--rationale", "-r",
                         help="Why this version exists (shown by history).")]


def _print_prompt(data: dict[str, Any]) -> None:
    current = " (current)" if data["is_current"] else ""
    parent = f"v{data['parent_version']}" if data["parent_version"] else "none"
    console.print(f"[bold]{data['variable']}[/] prompt v{data['version']}{current} · "
                  f"origin {data['origin']} · parent {parent} · "
                  f"variable v{data['variable_version']}")
    if data["rationale"]:
        console.print(f"rationale: {data['rationale']}", markup=False)
    console.print(f"config: temperature {data['temperature']} · max_tokens {data['max_tokens']} "
                  f"· model {data['model'] or '(run default)'}", markup=False)
    console.print("\n[bold]── system message ──[/]")
    console.print(data["system_template"], markup=False)
    console.print("\n[bold]── instruction block ──[/]")
    console.print(data["user_template"], markup=False)


def _report_new(data: dict[str, Any], created: bool, json_out: bool) -> None:
    if json_out:
        emit_json({**data, "created": created})
    elif created:
        console.print(f"[bold]{data['variable']}[/]: prompt v{data['version']} "
                      f"({data['origin']}) is now current")
    else:
        console.print(f"No change: {data['variable']} stays at prompt v{data['version']}")


def _read_file(path: Path, option: str) -> str:
    from config.settings import get_settings
    from extraction.errors import NotFoundError
    from extraction.input_files import read_text_limited

    try:
        return read_text_limited(path, limit=get_settings().max_input_file_bytes,
                                 what="prompt file", field=option)
    except NotFoundError as exc:  # a missing file given to an option is invalid input
        raise ValidationError(f"file not found: {path}", field=option,
                              instance=str(path)) from exc


def _open_in_editor(text: str) -> str:
    """Let the user edit ``text`` in $VISUAL / $EDITOR and return what they saved.

    (Typer 0.29 no longer re-exports click's ``edit``; this is the same idea, without a shell.)
    """
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or (
        "notepad" if sys.platform == "win32" else "vi")
    fd, name = tempfile.mkstemp(prefix="extractflow-prompt-", suffix=".md")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        try:
            status = subprocess.run([*shlex.split(editor), name], check=False).returncode
        except OSError as exc:
            raise ConfigError(f"cannot start the editor '{editor}': {exc}; set $EDITOR",
                              field="EDITOR") from None
        if status != 0:
            raise ConfigError(f"the editor '{editor}' exited with status {status}; nothing saved",
                              field="EDITOR")
        return Path(name).read_text(encoding="utf-8")
    finally:
        os.unlink(name)


@app.command("show")
def show(project: str, variable: str, version: VersionOpt = None,
         json_out: JsonOption = False) -> None:
    """Show a prompt version: system message, instruction block, config and provenance."""
    with db_session() as s:
        data = prompts.prompt_to_dict(prompts.get_prompt_version(s, project, variable, version))
    if json_out:
        emit_json(data)
    else:
        _print_prompt(data)


@app.command("history")
def history(project: str, variable: str, json_out: JsonOption = False) -> None:
    """Every prompt version of a variable, oldest first."""
    with db_session() as s:
        rows = [prompts.prompt_to_dict(p) for p in prompts.prompt_history(s, project, variable)]
    if json_out:
        emit_json(rows)
        return
    t = table("v", "origin", "parent", "temp", "max_tok", "created", "rationale",
              title=f"Prompt versions of {variable} (* current)")
    for column in t.columns[:-1]:
        column.no_wrap = True
    for r in rows:
        t.add_row(f"{r['version']}{'*' if r['is_current'] else ''}", r["origin"],
                  f"v{r['parent_version']}" if r["parent_version"] else "",
                  str(r["temperature"]), str(r["max_tokens"]),
                  (r["created_at"] or "")[:16].replace("T", " "), r["rationale"])
    console.print(t)


@app.command("diff")
def diff(project: str, variable: str, v1: int, v2: int, json_out: JsonOption = False) -> None:
    """A unified diff between two prompt versions (config, system message and block)."""
    with db_session() as s:
        a = prompts.get_prompt_version(s, project, variable, v1)
        b = prompts.get_prompt_version(s, project, variable, v2)
        text = prompts.diff_prompts(a, b)
    if json_out:
        emit_json({"variable": variable, "from": v1, "to": v2, "identical": not text,
                   "diff": text})
        return
    if not text:
        console.print(f"v{v1} and v{v2} of {variable} are identical")
        return
    for line in text.splitlines():
        style = ("bold" if line.startswith(("---", "+++")) else "green" if line.startswith("+")
                 else "red" if line.startswith("-") else "cyan" if line.startswith("@@") else None)
        console.print(line, style=style, markup=False, highlight=False)


@app.command("edit")
def edit(
    project: str,
    variable: str,
    system: Annotated[bool, typer.Option("--system",
                      help="Edit the system message instead of the instruction block.")] = False,
    rationale: RationaleOpt = None,
    json_out: JsonOption = False,
) -> None:
    """Edit the current prompt in $EDITOR; a changed text becomes a new manual version."""
    with db_session() as s:
        current = prompts.get_prompt_version(s, project, variable)
        original = current.system_template if system else current.user_template
        current_data = prompts.prompt_to_dict(current)
    edited = _open_in_editor(original + "\n")
    if edited.replace("\r\n", "\n").strip() == original.strip():
        _report_new(current_data, False, json_out)
        return
    field = "system_template" if system else "user_template"
    with db_session() as s:
        new = prompts.set_manual_prompt(s, project, variable, **{field: edited},
                                        rationale=rationale or "edited in $EDITOR")
        data = prompts.prompt_to_dict(new)
    _report_new(data, data["id"] != current_data["id"], json_out)


@app.command("set")
def set_(
    project: str,
    variable: str,
    user_file: Annotated[Path | None, typer.Option("--user-file",
                         help="A file with the new instruction block.")] = None,
    user: Annotated[str | None, typer.Option("--user",
                    help="The new instruction block as text.")] = None,
    system_file: Annotated[Path | None, typer.Option("--system-file",
                           help="A file with the new system message.")] = None,
    temperature: Annotated[float | None, typer.Option("--temperature",
                           help="0 to 0.2.")] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens",
                          help="Answer budget of this variable.")] = None,
    rationale: RationaleOpt = None,
    json_out: JsonOption = False,
) -> None:
    """Store a hand-written change as a new manual prompt version (and make it current)."""
    if user_file is not None and user is not None:
        raise ValidationError("give the block either with --user or with --user-file, not both",
                              field="--user")
    block = _read_file(user_file, "--user-file") if user_file is not None else user
    system_text = _read_file(system_file, "--system-file") if system_file is not None else None
    with db_session() as s:
        before = prompts.get_prompt_version(s, project, variable).id
        new = prompts.set_manual_prompt(
            s, project, variable, user_template=block, system_template=system_text,
            temperature=temperature, max_tokens=max_tokens,
            rationale=rationale or "set from the command line")
        data = prompts.prompt_to_dict(new)
    _report_new(data, data["id"] != str(before), json_out)
    if system_text is not None and data["id"] != str(before) and not json_out:
        console.print("[dim]Note: in per_document mode one call uses the system message of the "
                      "first variable's prompt for all variables.[/]")


def _mount_refine() -> None:
    # `prompt refine` lives in its own module (it needs the LLM stack); mounted here so the
    # prompt group is complete whenever it is loaded.
    from extraction.cli.refine import refine

    app.command("refine")(refine)


_mount_refine()
