"""`extractflow job …`: list, show, watch, cancel jobs; read their logs and results."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from extraction import codebook
from extraction.cli._common import JsonOption, console, db_session, emit_json, new_app, table
from extraction.cli._progress import describe_outcome, follow_job, read_job
from extraction.models import JobStatus, LogLevel
from extraction.run import jobs, progress, views

app = new_app("Jobs: progress, logs, results and cancellation of sample and full runs.")

JobArg = Annotated[str, typer.Argument(help="Job id (or its first 8 characters).")]
_LEVEL_STYLE = {"ERROR": "red", "WARNING": "yellow", "INFO": "white", "DEBUG": "dim"}


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


@app.command("list")
def list_(
    project: str,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    json_out: JsonOption = False,
) -> None:
    """The project's jobs, newest first."""
    with db_session() as s:
        p = codebook.get_project(s, project)
        rows = [views.job_to_dict(j, project_name=p.name)
                for j in jobs.list_jobs(s, p, limit=limit)]
    if json_out:
        emit_json(rows)
        return
    t = table("id", "kind", "status", "done", "docs", "failed", "calls", "re-used",
              "created", title=f"Jobs of {project}")
    t.columns[0].no_wrap = t.columns[2].no_wrap = True
    for r in rows:
        t.add_row(r["id"][:8], r["kind"], r["status"], f"{r['progress']:.0f}%",
                  f"{r['documents_completed'] + r['documents_failed']}/{r['documents_total']}",
                  str(r["documents_failed"]), str(r["llm_calls"]), str(r["cells_reused"]),
                  (r["created_at"] or "")[:16].replace("T", " "))
    console.print(t)


def _cost(data: dict[str, Any]) -> str:
    """Dollars (or "unknown price"), the cache-hit share and the cap, for `job show`."""
    if data["cost_usd"] is not None:
        text = f"${data['cost_usd']:.4f}"
    else:
        text = "unknown price" if data["llm_calls"] else "$0 (no LLM call)"
    if data["tokens_in"]:
        text += f" (cache hits {data.get('tokens_cached', 0) / data['tokens_in']:.0%})"
    cap = (data.get("parameters") or {}).get("max_cost_usd")
    return text + (f" · cap ${float(cap):.4f}" if cap is not None else "")


@app.command("show")
def show(job: JobArg, logs: Annotated[int, typer.Option(
        "--logs", min=0, help="How many recent log entries to show.")] = 10,
         json_out: JsonOption = False) -> None:
    """Status, progress, totals and the most recent log entries of a job."""
    data = read_job(job)
    with db_session() as s:
        row = jobs.get_job(s, job)
        recent = [views.log_to_dict(e) for e in
                  reversed(progress.job_logs(s, row, limit=logs, newest_first=True))]
    if json_out:
        emit_json({**data, "recent_logs": recent})
        return
    console.print(describe_outcome(data) if data["status"] in {"COMPLETE", "FAILED", "CANCELLED"}
                  else f"Job {data['id']} ({data['kind']}) {data['status']}: "
                       f"{data['progress']:.0f}% — {data['documents_completed']} done, "
                       f"{data['documents_failed']} failed of {data['documents_total']}",
                  markup=False)
    console.print(f"project {data['project']} · mode {data['mode']} · model {data['model']} · "
                  f"tokens {data['tokens_in']} in / {data['tokens_out']} out"
                  + f" · cost {_cost(data)}"
                  + (f" · flow run {data['flow_run_id']}" if data["flow_run_id"] else ""),
                  markup=False)
    if data.get("stale"):
        console.print(f"[yellow]No sign of life for a while: the run was probably interrupted. "
                      f"Resume it with `extractflow run resume {data['id'][:8]}`.[/]")
    variables = (data.get("summary") or {}).get("variables") or []
    if variables:
        t = table("variable", "prompt", "fill rate", "ok", "not found", "failed",
                  "mean conf.", "re-used")
        for v in variables:
            t.add_row(v["variable"], f"v{v['prompt_version']}",
                      "–" if v["fill_rate"] is None else f"{v['fill_rate']:.0%}", str(v["ok"]),
                      str(v["not_found"]), str(v["failed"]),
                      "–" if v["mean_confidence"] is None else f"{v['mean_confidence']:.2f}",
                      str(v["reused"]))
        console.print(t)
    if recent:
        console.print("[bold]Recent log[/]")
        for e in recent:
            style = _LEVEL_STYLE.get(e["level"], "white")
            console.print(f"[{style}]{e['created_at'][:19]} {e['level']:<7}[/] ", end="")
            console.print(f"{e['event']}: {e['message']}", markup=False)


@app.command("watch")
def watch(job: JobArg, json_out: JsonOption = False) -> None:
    """A live progress bar until the job ends."""
    data = follow_job(job, show=not json_out)
    data.pop("stale", None)
    if json_out:
        emit_json(data)
    elif data["status"] in {s.value for s in jobs.TERMINAL}:
        console.print(describe_outcome(data), markup=False)
    else:
        console.print(f"Job {data['id']} is {data['status']} but shows no sign of life; "
                      f"resume it with `extractflow run resume {data['id'][:8]}`", markup=False)
        raise typer.Exit(1)


@app.command("logs")
def logs(
    job: JobArg,
    level: Annotated[str | None, typer.Option(
        "--level", help="Minimum level: DEBUG, INFO, WARNING or ERROR.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100000)] = 200,
    json_out: JsonOption = False,
) -> None:
    """The job's event log: errors with document, variable, attempts and provider message."""
    if level is not None and level.upper() not in LogLevel.__members__:
        from extraction.errors import ValidationError

        raise ValidationError(f"--level must be one of {', '.join(LogLevel.__members__)}",
                              field="level")
    with db_session() as s:
        row = jobs.get_job(s, job)
        entries = [views.log_to_dict(e)
                   for e in progress.job_logs(s, row, level=level, limit=limit)]
    if json_out:
        emit_json(entries)
        return
    t = table("time", "level", "event", "message", "attempts")
    for e in entries:
        t.add_row(e["created_at"][:19], e["level"], e["event"], e["message"],
                  str(e["details"].get("attempts", "")))
    console.print(t)


@app.command("results")
def results(
    job: JobArg,
    min_confidence: Annotated[float | None, typer.Option(
        "--min-confidence", min=0.0, max=1.0, help="Only extractions at least this confident.")]
    = None,
    variable: Annotated[str | None, typer.Option("--variable", help="Only this variable.")]
    = None,
    status: Annotated[str | None, typer.Option(
        "--status", help="Only ok, not_found or failed cells.")] = None,
    limit: Annotated[int | None, typer.Option(min=1)] = None,
    json_out: JsonOption = False,
) -> None:
    """Per extraction: document, variable, typed value, status, confidence, evidence, page."""
    if status is not None and status not in {"ok", "not_found", "failed"}:
        from extraction.errors import ValidationError

        raise ValidationError("--status must be ok, not_found or failed", field="status")
    with db_session() as s:
        row = jobs.get_job(s, job)
        items = [views.extraction_to_dict(e) for e in views.job_results(
            s, row, min_confidence=min_confidence, variable=variable, status=status,
            limit=limit)]
    if json_out:
        emit_json(items)
        return
    t = table("document", "variable", "value", "status", "conf.", "support", "evidence", "page",
              title=f"{len(items)} extractions")
    for e in items:
        t.add_row(e["filename"] or e["document_id"][:8], e["variable"],
                  "" if e["value"] is None else _short(e["value"], 40), e["status"],
                  "" if e["confidence"] is None else f"{e['confidence']:.2f}",
                  e["support"] or "", _short(e["evidence"] or e["error"] or "", 60),
                  "" if e["page"] is None else str(e["page"]))
    console.print(t)


@app.command("cancel")
def cancel(job: JobArg, json_out: JsonOption = False) -> None:
    """Cancel a job: no new LLM calls start; everything already extracted is kept."""
    with db_session() as s:
        row = jobs.cancel_job(s, job)
        data = views.job_to_dict(row, project_name=row.project.name)
    if (data.get("parameters") or {}).get("batch"):
        from extraction.run.batch import cancel_batches

        data["provider_batches_cancelled"] = cancel_batches(data["id"])
    prefect_cancelled = False
    if data["flow_run_id"]:
        from flows.launch import cancel_flow_run
        from flows.local_server import connect

        connect()  # the local server of `extractflow server start`, if it runs

        prefect_cancelled = cancel_flow_run(data["flow_run_id"])
    data["flow_run_cancel_requested"] = prefect_cancelled
    if json_out:
        emit_json(data)
        return
    console.print(f"Job {data['id']} CANCELLED; LLM calls in flight finish, nothing new starts."
                  + (f" Flow run {data['flow_run_id']} is being cancelled in Prefect."
                     if prefect_cancelled else ""), markup=False)
    if data["status"] != JobStatus.CANCELLED.value:  # pragma: no cover - cancel_job raises
        raise typer.Exit(1)
