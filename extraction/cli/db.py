"""`extractflow db …`: migrate the database and see where it stands."""

from __future__ import annotations

from typing import Annotated

import typer

from config.settings import get_settings
from extraction import db
from extraction.cli._common import JsonOption, console, emit_json, new_app

app = new_app("Database: upgrade to the current schema, show status.")


@app.command("upgrade")
def upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    json_out: JsonOption = False,
) -> None:
    """Apply the Alembic migrations (needed once per release on PostgreSQL)."""
    settings = get_settings()
    reached = db.upgrade_database(settings.resolved_database_url, revision)
    if json_out:
        emit_json({"database": settings.safe_database_url, "revision": reached})
    else:
        console.print(f"Database {settings.safe_database_url} is at revision {reached}")


@app.command("status")
def status(json_out: JsonOption = False) -> None:
    """Show the database URL (password hidden) and its schema revision."""
    settings = get_settings()
    engine = db.get_engine(settings.resolved_database_url)
    try:
        current = db.current_revision(engine)
    except Exception as exc:  # noqa: BLE001 - shown to the user as a database problem
        from extraction.db import _unreachable

        raise _unreachable(engine, exc) from exc
    head = db.head_revision()
    data = {"database": settings.safe_database_url, "revision": current, "head": head,
            "up_to_date": current == head}
    if json_out:
        emit_json(data)
    else:
        state = "up to date" if current == head else "behind: run `extractflow db upgrade`"
        console.print(f"{data['database']}: revision {current or 'none'} (head {head}) — {state}")
