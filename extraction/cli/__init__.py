"""The `extractflow` command: a root that mounts one sub-app per command group, lazily.

Each group is imported only when it is used: the whole CLI imports openai, instructor,
PyMuPDF, openpyxl, DuckDB and Prefect, seconds of start-up before any command runs, while
most commands need few of them (`extractflow project list` needs none). ``--help`` imports
every group, to list them with their help.
"""

from __future__ import annotations

import importlib
from typing import Any

import click
import typer

from config.logging import configure_logging, quiet_prefect_environment
from extraction.cli._common import ProblemGroup

__all__ = ["COMMANDS", "app", "main"]

#: command name -> (module, attribute): a Typer sub-app, or a function for a single command.
COMMANDS: dict[str, tuple[str, str]] = {
    "project": ("extraction.cli.project", "app"),
    "variable": ("extraction.cli.variable", "app"),
    "codebook": ("extraction.cli.codebook", "app"),
    "docs": ("extraction.cli.docs", "app"),
    "prompt": ("extraction.cli.prompt", "app"),
    "run": ("extraction.cli.run", "app"),
    "job": ("extraction.cli.job", "app"),
    "feedback": ("extraction.cli.feedback", "app"),
    "review": ("extraction.cli.review", "app"),
    "scorecard": ("extraction.cli.scorecard", "scorecard"),
    "export": ("extraction.cli.export", "export_command"),
    "evaluate": ("extraction.cli.evaluate", "evaluate_command"),
    "compare": ("extraction.cli.evaluate", "compare_command"),
    "llm": ("extraction.cli.llm", "app"),
    "db": ("extraction.cli.db", "app"),
    "server": ("extraction.cli.server", "app"),
}


def load_command(name: str) -> click.Command:
    """Import one command group (or single command) and build its click command."""
    module, attribute = COMMANDS[name]
    target: Any = getattr(importlib.import_module(module), attribute)
    if isinstance(target, typer.Typer):
        command: click.Command = typer.main.get_group(target)
    else:
        single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


class LazyGroup(ProblemGroup):
    """The root group: lists every command, imports a command's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in COMMANDS if n not in self.commands)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in COMMANDS:
            command = load_command(cmd_name)
            self.add_command(command, cmd_name)
        return command


app = typer.Typer(
    name="extractflow",
    help="Turn a pile of documents into a typed, grounded dataset with LLMs.",
    cls=LazyGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug logs.")) -> None:
    configure_logging(verbose)


def main() -> None:
    """Console-script entry point."""
    from extraction.cli._signals import exit_now_if_interrupted

    quiet_prefect_environment()
    try:
        app()
    except SystemExit as exc:
        exit_now_if_interrupted(exc.code if isinstance(exc.code, int) else 1)
        raise
