"""What every command group shares: the console, JSON output, error reporting, sessions."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from sqlalchemy.orm import Session
from typer._click.exceptions import (  # Typer 0.29 vendors click: these are its classes
    ClickException,
    NoArgsIsHelpError,
    UsageError,
)
from typer.core import TyperGroup

from extraction.db import session_scope
from extraction.errors import ConfigError, ExtractflowError, ValidationError

__all__ = [
    "EXIT_RUN_CANCELLED",
    "EXIT_RUN_FAILED",
    "EXIT_USAGE",
    "JsonOption",
    "ProblemGroup",
    "console",
    "db_session",
    "emit_json",
    "err_console",
    "literal",
    "markup_literal",
    "new_app",
    "quiet_prefect_console",
    "report_error",
    "table",
]

#: Exit codes of the CLI's own outcomes (errors use their class's code; see the README).
EXIT_USAGE = 4  # a bad option or argument is invalid input, like any ValidationError
EXIT_RUN_FAILED = 11
EXIT_RUN_CANCELLED = 12

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if hasattr(value, "value"):  # enums
        return value.value
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def emit_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout, unwrapped, so scripts can parse it."""
    sys.stdout.write(json.dumps(data, default=_default, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def report_error(exc: ExtractflowError, *, as_json: bool) -> None:
    """Show an error as a readable message, or as its problem-details object with --json."""
    if as_json:
        emit_json({"error": exc.to_problem()})
        return
    err_console.print(f"[bold red]Error:[/] {exc.title}", highlight=False)
    err_console.print(f"  {exc.detail}", markup=False, highlight=False)
    if exc.field:
        err_console.print(f"  field: {exc.field}", markup=False)
    if exc.extra.get("usage"):
        err_console.print(f"  see: {exc.extra['usage']}", markup=False)
    for problem in exc.extra.get("errors", [])[1:]:
        err_console.print(f"  also: {problem['field']}: {problem['message']}", markup=False)


class ProblemGroup(TyperGroup):
    """A Typer group that turns :class:`ExtractflowError` into a message and an exit code."""

    def main(self, args: Any = None, *rest: Any, **kwargs: Any) -> Any:
        argv = list(args) if args is not None else sys.argv[1:]
        kwargs.pop("standalone_mode", None)
        try:
            # Not click's standalone mode: it would print its own box for a usage error and
            # exit 2, ignoring --json. A bad option is invalid input like any other (exit 4).
            code = super().main(args, *rest, standalone_mode=False, **kwargs)
            sys.exit(code if isinstance(code, int) else 0)
        except NoArgsIsHelpError as exc:  # a group called alone shows its help
            exc.show()
            sys.exit(exc.exit_code)
        except UsageError as exc:
            report_error(usage_problem(exc), as_json="--json" in argv)
            sys.exit(EXIT_USAGE)
        except ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except typer.Abort:
            err_console.print("Aborted.")
            sys.exit(1)
        except ExtractflowError as exc:
            report_error(exc, as_json="--json" in argv)
            sys.exit(exc.exit_code)
        except RuntimeError as exc:
            problem = prefect_start_problem(exc)
            if problem is None:
                raise
            report_error(problem, as_json="--json" in argv)
            sys.exit(problem.exit_code)


def usage_problem(exc: UsageError) -> ValidationError:
    """A click usage error (a bad option value, a missing argument) as invalid input."""
    param = getattr(exc, "param", None)
    field = getattr(param, "name", None) if param is not None else None
    problem = ValidationError(exc.format_message(), field=field)
    problem.title = "Invalid usage"
    command = exc.ctx.command_path if exc.ctx is not None else "extractflow"
    problem.extra["usage"] = f"{command} --help"
    return problem


def prefect_start_problem(exc: BaseException) -> ConfigError | None:
    """A plain error for Prefect's temporary API server not starting in time, else None.

    On a busy 2-core machine (or a first run, when Prefect creates its database) the
    ephemeral server can take longer than Prefect's own 20 s default; the flows' bootstrap
    raises that default for every way a flow is started (see flows/bootstrap.py), and when
    even that is not enough the user learns what to do instead of reading a traceback.
    """
    if "ephemeral Prefect API server" not in str(exc):
        return None
    waited = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "20")
    problem = ConfigError(
        f"Prefect's temporary API server did not start within {waited} s (a busy machine, "
        "or a first run creating its database). Try again, set "
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS higher, or run `prefect server "
        "start` and set PREFECT_API_URL=http://127.0.0.1:4200/api.")
    problem.title = "Prefect did not start"
    return problem


def new_app(help_text: str) -> typer.Typer:
    """A sub-app with the house settings (no shell-completion noise, short help)."""
    return typer.Typer(help=help_text, no_args_is_help=True, add_completion=False,
                       rich_markup_mode=None, pretty_exceptions_enable=False)


@contextmanager
def db_session() -> Iterator[Session]:
    """A committed-on-success session on the configured database."""
    with session_scope() as session:
        yield session


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def literal(text: object) -> str:
    """``text`` safe for a terminal: control characters (ANSI escapes, bells, newlines in a
    file name) shown as ``\\x1b``-style escapes. Print the result with ``markup=False`` (or
    inside a :class:`~rich.text.Text`) so ``[bold]`` in a file name stays as typed."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"),
                        str(text))


def markup_literal(text: object) -> str:
    """:func:`literal`, also escaped for Rich markup (for a line that has markup of its own)."""
    return escape(literal(text))


class _LiteralTable(Table):
    """A table whose string cells are shown as typed: no markup, control characters escaped.

    Cells come from user data (file names, values, error texts), so none is read as markup.
    """

    def add_row(self, *renderables: Any, **kwargs: Any) -> None:  # type: ignore[override]
        super().add_row(*(Text(literal(r)) if isinstance(r, str) else r for r in renderables),
                        **kwargs)


def table(*columns: str, title: str | None = None) -> Table:
    t = _LiteralTable(title=title, show_lines=False, header_style="bold")
    for col in columns:
        t.add_column(col, overflow="fold")
    return t


class _HideRunLogs(logging.Filter):
    """Keep Prefect's and the flows' own log lines off the terminal during a local run.

    They still reach the Prefect API (the UI shows them); the CLI prints the outcome itself,
    with the reason, so engine chatter and tracebacks of an already-reported failure would
    only be noise. ``--verbose`` shows everything.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(("prefect", "flows", "tasks"))


def quiet_prefect_console() -> None:
    """Hide Prefect's console logging for a flow run in this process (``--verbose`` keeps it)."""
    if logging.getLogger().level <= logging.DEBUG:  # --verbose
        return
    from config.logging import set_prefect_console_level

    set_prefect_console_level("CRITICAL")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _HideRunLogs) for f in handler.filters):
            handler.addFilter(_HideRunLogs())
