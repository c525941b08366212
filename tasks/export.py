"""The export task: write a project's dataset to a file (thin wrapper)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.cache_policies import NO_CACHE

if TYPE_CHECKING:
    from extraction.export import ExportOptions

__all__ = ["export_file"]


@task(name="export-file", cache_policy=NO_CACHE)
def export_file(project: str, options: ExportOptions) -> dict[str, Any]:
    """Write the project's dataset as ``options`` say; returns the ExportResult as a dict."""
    # Imported here, not at module level: with the export modules (and so DuckDB) referenced
    # from this task's globals, DuckDB's bindings print "nanobind: leaked …" noise when a
    # process that ran the flow exits. Measured; importing here keeps the exit quiet.
    from extraction.db import session_scope
    from extraction.export import export_project

    with session_scope() as session:
        result = export_project(session, project, options)
    return {**result.to_dict(), "markdown": result.to_markdown()}
