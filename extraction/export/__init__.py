"""Exports: a project's extractions as CSV (wide or long), Excel, JSON or Parquet.

Layout of the package: ``options`` (what is asked, what was written), ``query`` (which values,
read from the database into DuckDB), ``values`` (stored JSON → text and typed forms), ``shape``
(wide and long tables in DuckDB SQL), ``safety`` (formula neutralisation, output paths, column
names), ``writers`` and ``xlsx`` (one function per format) and ``service`` (the entry point,
:func:`export_project`).

Example:
    >>> from extraction.db import session_scope
    >>> from extraction.export import ExportOptions, export_project
    >>> with session_scope() as session:                                      # doctest: +SKIP
    ...     result = export_project(session, "trials",
    ...                             ExportOptions(format="xlsx", output="trials.xlsx"))
"""

from extraction.export.options import ExportFormat, ExportOptions, ExportResult
from extraction.export.safety import neutralise, resolve_output_path
from extraction.export.service import export_project, output_path_for

__all__ = [
    "ExportFormat",
    "ExportOptions",
    "ExportResult",
    "export_project",
    "neutralise",
    "output_path_for",
    "resolve_output_path",
]
