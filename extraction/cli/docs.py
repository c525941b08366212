"""`extractflow docs …`: add files to a project, list them, show one page by page, remove one.

``docs add`` runs the Prefect ``ingest`` flow in this process (Prefect's ephemeral API: no
server needed; with ``PREFECT_API_URL`` set, the run shows up on that server) and draws a
progress bar from the flow's chunk-by-chunk totals. ``--no-flow`` runs the same ingest code
without Prefect: no API start-up, nothing recorded in Prefect — handy in scripts. Either
way the project and the paths are checked first, so a typo is reported at once.

Bad files do not make the command fail: they are stored as failed or empty documents and
listed in the summary (``docs list PROJECT --status failed`` shows them later).
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from extraction import codebook
from extraction.cli._common import (
    JsonOption,
    console,
    db_session,
    emit_json,
    err_console,
    literal,
    markup_literal,
    new_app,
    quiet_prefect_console,
    table,
)
from extraction.documents import format_size
from extraction.documents import store as document_store
from extraction.errors import ValidationError
from extraction.ingest import DEFAULT_CHUNK_SIZE, IngestSummary, discover_files, ingest_paths

app = new_app("Documents: add files to a project, list them, show one, remove one.")

_PROBLEM_ROWS = 20


class _Bar:
    """A rich progress bar on stderr fed with the ingest's running totals."""

    def __init__(self, total: int, *, show: bool, waiting: str) -> None:
        self._progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
            MofNCompleteColumn(), TextColumn("files"),
            TextColumn("[red]{task.fields[failed]} failed"), TimeElapsedColumn(),
            console=err_console, disable=not show, transient=False,
        )
        self._task = self._progress.add_task(waiting, total=total, failed=0)

    def __enter__(self) -> _Bar:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def update(self, summary: IngestSummary) -> None:
        self._progress.update(self._task, description="ingesting", total=summary.files_seen,
                              completed=summary.files_done, failed=summary.failed)


@app.command("add")
def add(
    project: str,
    paths: Annotated[list[str], typer.Argument(
        help="Files, folders (read recursively, hidden files skipped) and glob patterns.",
        metavar="PATH...")],
    no_flow: Annotated[bool, typer.Option(
        "--no-flow", help="Run without Prefect (faster to start; no flow run recorded).")]
    = False,
    chunk_size: Annotated[int, typer.Option(
        "--chunk-size", min=1, help="Files parsed and stored together.")] = DEFAULT_CHUNK_SIZE,
    max_file_bytes: Annotated[int | None, typer.Option(
        "--max-file-bytes", min=1, help="Larger files become failed documents "
        "(default: EXTRACTFLOW_MAX_FILE_BYTES).")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="Parse processes (default: EXTRACTFLOW_PARSE_CONCURRENCY, "
        "at most the CPUs).")] = None,
    shards: Annotated[int | None, typer.Option(
        "--shards", min=1, help="Parse in N shards, ingest flow runs that any worker of the "
        "pool takes (needs a Prefect server and the ingest deployment; else all here).")]
    = None,
    json_out: JsonOption = False,
) -> None:
    """Add documents to a project; duplicates are skipped, bad files recorded with a reason."""
    if shards is not None and no_flow:
        raise ValidationError("--shards runs ingest flow runs on a work pool; it cannot be "
                              "combined with --no-flow", field="shards")
    with db_session() as s:
        name = codebook.get_project(s, project).name
    files = discover_files(paths)  # a missing path is reported before anything starts
    options: dict[str, Any] = {"chunk_size": chunk_size, "max_file_bytes": max_file_bytes,
                               "workers": workers}
    if shards is not None:
        options["shards"] = shards
    waiting = "reading" if no_flow else "starting Prefect"
    with _Bar(len(files), show=not json_out, waiting=waiting) as bar:
        if no_flow:
            result = ingest_paths(name, paths, on_progress=bar.update, **options).to_dict()
        else:
            result = _run_flow(name, paths, bar, options)
    if json_out:
        emit_json(result)
        return
    _print_summary(result)


def _run_flow(project: str, paths: list[str], bar: _Bar, options: dict[str, Any]
              ) -> dict[str, Any]:
    import asyncio

    quiet_prefect_console()
    from flows.bootstrap import bootstrap

    bootstrap()  # before Prefect is imported
    from flows._server import start_embedded_server
    from flows.ingest import ingest, watch_progress

    start_embedded_server()  # gone with this command, however it ends

    # Absolute paths: the flow run's parameters in Prefect say exactly what was read.
    absolute = [os.path.abspath(os.path.expanduser(p)) for p in paths]
    with watch_progress(bar.update):
        state = asyncio.run(ingest(project=project, paths=absolute, return_state=True,
                                   **options))
    return state.result(raise_on_failure=True)  # type: ignore[no-any-return]


def _print_summary(result: dict[str, Any]) -> None:
    style = "red" if result["failed"] else "green"
    console.print(
        f"[{style}]Ingested {result['files_done']} files into "
        f"'{markup_literal(result['project'])}'[/]: "
        f"{result['ok']} parsed, {result['empty']} empty, {result['failed']} failed, "
        f"{result['duplicates']} duplicates skipped; {result['added']} new documents, "
        f"{result['pages']} pages, {format_size(result['bytes'])} in {result['seconds']:.1f} s",
        highlight=False)
    if result["replaced"]:
        console.print(f"{result['replaced']} earlier failed/empty records of these files "
                      "were replaced by the new outcome.", highlight=False)
    problems = result["problems"]
    if problems:
        t = table("file", "status", "reason", title="Files that cannot be extracted")
        for problem in problems[:_PROBLEM_ROWS]:
            t.add_row(problem["filename"], problem["status"], problem["reason"])
        console.print(t)
        if len(problems) > _PROBLEM_ROWS:
            console.print(f"…and {len(problems) - _PROBLEM_ROWS} more: "
                          f"extractflow docs list {result['project']} --status failed",
                          markup=False)


@app.command("list")
def list_(
    project: str,
    status: Annotated[str | None, typer.Option(
        "--status", help="Only documents with this parse status: ok, failed, empty, pending.")]
    = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    json_out: JsonOption = False,
) -> None:
    """List a project's documents by filename, a page at a time."""
    with db_session() as s:
        p = codebook.get_project(s, project)
        rows = [document_store.document_to_dict(d) for d in
                document_store.list_documents(s, p, status=status, limit=limit, offset=offset)]
        total = document_store.count_documents(s, p, status=status)
        counts = document_store.status_counts(s, p)
        name = p.name
    if json_out:
        emit_json({"project": name, "status": status, "total": total, "limit": limit,
                   "offset": offset, "counts": counts, "items": rows})
        return
    which = f" with status {status}" if status else ""
    first = offset + 1 if rows else offset
    t = table("id", "filename", "status", "pages", "size", "problem",
              title=f"Documents {first}–{offset + len(rows)} of {total}{which} in '{name}'")
    for r in rows:
        size = format_size(r["size_bytes"]) if r["size_bytes"] is not None else "-"
        t.add_row(r["id"][:8], r["filename"], r["parse_status"],
                  str(r["page_count"] or r["pages_of_text"] or "-"), size,
                  r["parse_error"] or "")
    console.print(t)
    console.print(", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no documents yet",
                  highlight=False)


@app.command("show")
def show(
    document: Annotated[str, typer.Argument(help="Document id, or its first 6+ hex digits.")],
    page: Annotated[int | None, typer.Option(
        "--page", min=1, help="Print the full text of this page instead of previews.")] = None,
    chars: Annotated[int, typer.Option(
        "--chars", min=10, help="Characters of each page preview.")] = 200,
    json_out: JsonOption = False,
) -> None:
    """Show a document: status, metadata, and the beginning of every page."""
    with db_session() as s:
        d = document_store.get_document(s, document)
        data = document_store.document_to_dict(d, previews=document_store.page_previews(d, chars))
        data["project"] = d.project.name
        if page is not None:
            data["page"] = page
            data["page_text"] = document_store.page_text(d, page)
    if json_out:
        emit_json(data)
        return
    if page is not None:
        console.print(f"[bold]{markup_literal(data['filename'])}[/] page {page}",
                      highlight=False)
        console.print(data["page_text"], markup=False, highlight=False)
        return
    _print_document(data)


def _print_document(data: dict[str, Any]) -> None:
    console.print(f"[bold]{markup_literal(data['filename'])}[/]  id {data['id']}  project "
                  f"{markup_literal(data['project'])}", highlight=False)
    facts = [
        ("status", data["parse_status"] + (f" — {data['parse_error']}"
                                           if data["parse_error"] else "")),
        ("source", data["source_path"] or "-"),
        ("type", data["mime"] or "-"),
        ("size", format_size(data["size_bytes"]) if data["size_bytes"] is not None else "-"),
        ("pages", str(data["page_count"]) if data["page_count"] is not None
         else f"{data['pages_of_text']} (no page layout)"),
        ("characters", str(data["characters"])),
        ("sha256", data["content_hash"] or "-"),
    ]
    facts += [(key, str(value)) for key, value in data["metadata"].items()]
    for key, value in facts:
        console.print(f"  {key:<12} {value}", markup=False, highlight=False)
    pages = data["pages"]
    if not pages:
        return
    t = table("page", "chars", "text begins", title="Pages")
    for p in pages[:50]:
        t.add_row(str(p["page"]), str(p["characters"]), p["preview"])
    console.print(t)
    if len(pages) > 50:
        console.print(f"…and {len(pages) - 50} more pages; --json lists them all",
                      markup=False)
    console.print(f"Full text of a page: extractflow docs show {data['id'][:8]} --page N",
                  markup=False)


@app.command("remove")
def remove(
    document: Annotated[str, typer.Argument(help="Document id, or its first 6+ hex digits.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
    = False,
    json_out: JsonOption = False,
) -> None:
    """Remove a document and its extractions from its project."""
    with db_session() as s:
        d = document_store.get_document(s, document)
        label = f"'{literal(d.filename)}' ({str(d.id)[:8]}) from project " \
            f"'{literal(d.project.name)}'"
    if not yes:
        typer.confirm(f"Remove document {label} and its extractions?", abort=True)
    with db_session() as s:
        removed = document_store.remove_document(s, document)
    if json_out:
        emit_json(removed)
    else:
        console.print(f"Removed document {label} and {removed['extractions_removed']} "
                      "extractions", highlight=False, markup=False)
