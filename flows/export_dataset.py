"""The ``export-dataset`` flow: a project's dataset as a file, with a report artifact."""

from __future__ import annotations

import re
from typing import Any

from prefect.artifacts import acreate_markdown_artifact
from prefect.context import SyncClientContext

from extraction.export import ExportOptions
from flows.entry import entry_flow
from tasks.export import export_file

__all__ = ["export_dataset"]


def _artifact_key(project: str) -> str:
    # Artifact keys allow lowercase letters, digits and dashes only.
    return "export-" + (re.sub(r"[^a-z0-9]+", "-", project.lower()).strip("-") or "project")


@entry_flow(name="export-dataset")
async def export_dataset(
    project: str,
    format: str = "csv-wide",
    output: str | None = None,
    job_id: str | None = None,
    include_confidence: bool = False,
    include_source_text: bool = False,
    min_confidence: float | None = None,
    force: bool = False,
    include_document_text: bool = False,
) -> dict[str, Any]:
    """Export a project's extractions to one file and leave a Markdown report artifact.

    Args:
        project: Project name or id.
        format: csv-wide (one row per document), csv-long (one row per extraction), xlsx
            (data, long, codebook and run-metadata sheets), json or parquet.
        output: File to write, on the machine running the flow. Default: a new file under
            ``$EXTRACTFLOW_HOME/exports``.
        job_id: Export only this job. Default: for each document × variable, the value from
            the newest COMPLETE job that has one.
        include_confidence: Add each value's confidence.
        include_source_text: Add each value's evidence quote and page.
        min_confidence: Blank and flag values below this confidence (0-1).
        force: Overwrite ``output`` if it exists.
        include_document_text: Add each document's full text (large).

    Async for Prefect's sake, like ``ingest``: a sync flow run ends by waiting up to a second
    for its heartbeat thread. Callers outside an event loop: ``asyncio.run(export_dataset(…))``.
    """
    options = ExportOptions(
        format=format, output=output, job_id=job_id, include_confidence=include_confidence,
        include_source_text=include_source_text, include_document_text=include_document_text,
        min_confidence=min_confidence, force=force,
    )
    with SyncClientContext.get_or_create():  # the sync task reuses the flow's API client
        result = export_file(project, options)
    await acreate_markdown_artifact(
        key=_artifact_key(result["project"]),
        markdown=result.pop("markdown"),
        description=f"{result['format']} export: {result['rows']} rows × "
                    f"{result['columns']} columns at {result['path']}",
    )
    return result
