"""`extractflow run …`: start sample and full runs, resume an interrupted one.

A run is a Prefect flow (``sample-run`` / ``full-run``). The CLI first creates the job row, so
its id is known at once, then either runs the flow in this process (default; Prefect's
ephemeral API, no server needed) with a progress bar, starts it in a detached process
(``--no-wait``), or triggers the deployed flow on a Prefect server (``--deployment``).

Resume: ``extractflow run resume JOB`` runs an interrupted job again (its process was killed,
the job is still PROCESSING with no heartbeat): the cells it already wrote are kept and only
the rest is extracted. A job its budget cap stopped (``--max-cost``; CANCELLED "budget
reached") resumes the same way with a higher cap. A failed or otherwise cancelled job is
final — start a new run instead; cells done before are re-used at no LLM cost.

Cost: ``--estimate`` prints what the run would cost (documents, calls, tokens, dollars, time;
:mod:`extraction.run.forecast`) and starts nothing; ``--max-cost USD`` caps it
(:mod:`extraction.run.budget`).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import typer

from config.settings import get_settings
from extraction.cli._common import (
    JsonOption,
    console,
    db_session,
    emit_json,
    err_console,
    new_app,
)
from extraction.cli._cost import check_cap, new_cap, print_estimate
from extraction.cli._launch import exit_for, launch, report_waiting, wait_local
from extraction.cli._progress import describe_outcome, read_job
from extraction.errors import ValidationError
from extraction.models import JobKind, JobStatus
from extraction.run import jobs, views
from extraction.run.plan import create_run_job, open_job

app = new_app("Runs: extract a sample or every document, locally or on a Prefect server.")

ModeOpt = Annotated[str | None, typer.Option(
    "--mode", help="per_document (one call per document) or per_variable.")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="LLM model for this run.")]
NoWaitOpt = Annotated[bool, typer.Option(
    "--no-wait", help="Start the run and return; follow it with `job watch`.")]
DeploymentOpt = Annotated[bool, typer.Option(
    "--deployment", help="Run the deployed flow on the Prefect server (PREFECT_API_URL).")]


EstimateOpt = Annotated[bool, typer.Option(
    "--estimate", help="Print the run's documents to do, calls, tokens, cost (sync, batch, "
    "cached prefix) and time, then exit: no LLM call, no job.")]
MaxCostOpt = Annotated[float | None, typer.Option(
    "--max-cost", min=0.000001, help="Budget cap in USD: no new LLM call once spent "
    "+ in flight would pass it; the job ends CANCELLED 'budget reached' (default: "
    "EXTRACTFLOW_MAX_COST_USD).")]


AllowLargeOpt = Annotated[bool, typer.Option(
    "--allow-large", help="Run even when the estimate is over EXTRACTFLOW_RUN_CONFIRM_CALLS "
    "calls or EXTRACTFLOW_RUN_CONFIRM_TOKENS input tokens.")]


def _create(kind: JobKind, project: str, *, allow_large: bool = False, json_out: bool = False,
            max_cost: float | None = None, **options: Any) -> dict[str, Any]:
    """Create the job, after checking its estimated cost against the settings' guard."""
    from extraction.run.estimate import estimate_job

    settings = get_settings()
    with db_session() as s:
        job = create_run_job(s, settings, kind=kind, project=project, max_cost_usd=max_cost,
                             **options)
        check_cap(settings, job.model, max_cost)
        estimate = estimate_job(s, job, settings)
        large = estimate.calls > settings.run_confirm_calls \
            or estimate.tokens_in > settings.run_confirm_tokens
        if large and not allow_large:
            s.rollback()  # the job is not kept: nothing was started
            raise ValidationError(
                f"this run is large: {estimate.describe()}, over the limits of "
                f"{settings.run_confirm_calls:,} calls / {settings.run_confirm_tokens:,} input "
                "tokens (EXTRACTFLOW_RUN_CONFIRM_CALLS / _TOKENS). Check the documents (a "
                "huge file?) and run again with --allow-large to go ahead.",
                field="allow_large", extra={"estimate": estimate.__dict__})
        if large and not json_out:
            err_console.print(f"Large run: {estimate.describe()}", markup=False,
                              highlight=False)
        data = views.job_to_dict(job, project_name=job.project.name)
        data["estimate"] = dict(estimate.__dict__)
        return data


def _split_ids(docs: str | None) -> list[str] | None:
    if not docs:
        return None
    ids = [part.strip() for part in docs.split(",") if part.strip()]
    if not ids:
        raise ValidationError("--docs needs at least one document id", field="docs")
    return ids


def _full_document_ids(project: str, refs: list[str]) -> list[str]:
    """Ids or the 8-character prefixes `docs list` shows, as full ids of the project's
    documents."""
    from extraction import codebook
    from extraction.documents.store import get_document

    for ref in refs:
        digits = ref.strip().lower().replace("-", "")
        if len(digits) < 6 or any(c not in "0123456789abcdef" for c in digits):
            raise ValidationError(f"'{ref}' is not a document id (a UUID, or at least 6 of "
                                  "its first hex digits)", field="docs")
    with db_session() as s:
        scope = codebook.get_project(s, project)
        return [str(get_document(s, ref, project=scope).id) for ref in refs]


@app.command("sample")
def sample(
    project: str,
    n: Annotated[int | None, typer.Option("--n", min=1, help="Sample size (default 10).")]
    = None,
    docs: Annotated[str | None, typer.Option(
        "--docs", help="Comma-separated document ids instead of a random sample.")] = None,
    seed: Annotated[int | None, typer.Option(
        "--seed", help="Seed of the random sample (same seed, same documents).")] = None,
    mode: ModeOpt = None,
    model: ModelOpt = None,
    no_wait: NoWaitOpt = False,
    deployment: DeploymentOpt = False,
    allow_large: AllowLargeOpt = False,
    estimate: EstimateOpt = False,
    max_cost: MaxCostOpt = None,
    json_out: JsonOption = False,
) -> None:
    """Extract a reproducible random sample (or chosen documents) to check the prompts."""
    document_ids = _split_ids(docs)
    if document_ids and n is not None:
        raise ValidationError("give either --n or --docs, not both", field="docs")
    if document_ids:
        document_ids = _full_document_ids(project, document_ids)
    if estimate:
        print_estimate(JobKind.SAMPLE, project, json_out=json_out, n=n, seed=seed,
                  document_ids=document_ids, mode=mode, model=model, max_cost=max_cost)
        return
    data = _create(JobKind.SAMPLE, project, n=n, seed=seed, document_ids=document_ids,
                   mode=mode, model=model, allow_large=allow_large, json_out=json_out,
                   max_cost=max_cost)
    launch(JobKind.SAMPLE, data, no_wait=no_wait, deployment=deployment, json_out=json_out)


@app.command("full")
def full(
    project: str,
    document_filter: Annotated[str | None, typer.Option(
        "--filter", help="Only documents whose filename matches this glob.")] = None,
    mode: ModeOpt = None,
    model: ModelOpt = None,
    no_wait: NoWaitOpt = False,
    deployment: DeploymentOpt = False,
    allow_large: AllowLargeOpt = False,
    estimate: EstimateOpt = False,
    max_cost: MaxCostOpt = None,
    shards: Annotated[int | None, typer.Option(
        "--shards", min=1, help="Split the run into N shards, child flow runs that any "
        "worker of the pool takes (needs a Prefect server and the full-run-shard "
        "deployment; else the run goes on in this process).")] = None,
    batch: Annotated[bool, typer.Option(
        "--batch", help="Through the provider's Batch API: about half the price, answers "
        "within 24 h; the run submits and returns, `run collect` stores the answers.")]
    = False,
    json_out: JsonOption = False,
) -> None:
    """Extract every document of the project (unchanged cells are re-used, not re-asked)."""
    if estimate:
        print_estimate(JobKind.FULL, project, json_out=json_out, filename_glob=document_filter,
                  mode=mode, model=model, max_cost=max_cost)
        return
    data = _create(JobKind.FULL, project, filename_glob=document_filter, mode=mode, model=model,
                   allow_large=allow_large, json_out=json_out, max_cost=max_cost,
                   shards=shards, batch=batch)
    launch(JobKind.FULL, data, no_wait=no_wait, deployment=deployment, json_out=json_out)


@app.command("resume")
def resume(
    job: str,
    force: Annotated[bool, typer.Option(
        "--force", help="Resume even if the job looks like it is still running.")] = False,
    no_wait: NoWaitOpt = False,
    deployment: DeploymentOpt = False,
    max_cost: MaxCostOpt = None,
    json_out: JsonOption = False,
) -> None:
    """Finish an interrupted job, or one its budget cap stopped: keep what it wrote, extract
    the rest (``--max-cost``: the job's new cap, on its total cost)."""
    settings = get_settings()
    with db_session() as s:
        row = jobs.get_job(s, job)
        budget_stopped = jobs.stopped_by_budget(row)
        if max_cost is not None or budget_stopped:
            new_cap(s, row, max_cost, settings)
        if not budget_stopped and row.status is JobStatus.PROCESSING and not force \
                and not jobs.is_stale(row, after_seconds=settings.job_stale_seconds):
            open_job(s, row.id, stale_after=settings.job_stale_seconds)  # raises the conflict
        if not budget_stopped and row.status not in (JobStatus.PROCESSING, JobStatus.PENDING):
            open_job(s, row.id, stale_after=settings.job_stale_seconds)  # raises the state error
        data = views.job_to_dict(row, project_name=row.project.name)
    launch(JobKind(data["kind"]), data, no_wait=no_wait, deployment=deployment,
            json_out=json_out, force=True, created=False)


@app.command("collect")
def collect(
    job: Annotated[str | None, typer.Argument(
        help="The batch job (id or prefix); default: every job waiting for batches.")] = None,
    wait: Annotated[bool, typer.Option(
        "--wait", help="Ask again every EXTRACTFLOW_BATCH_POLL_SECONDS until done.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Store the answers of a batch run's provider batches that finished; finish the job."""
    import time

    from extraction.errors import ConfigError, ExtractflowError, is_fatal
    from extraction.run import batch as batches
    from extraction.run.summary import finalize_job

    settings = get_settings()
    ids = [read_job(job)["id"]] if job else batches.jobs_waiting()
    if not ids and not json_out:
        console.print("No job is waiting for provider batches.")
    results = []
    for job_id in ids:
        while True:
            try:
                state = batches.advance(job_id, settings)
            except ExtractflowError as exc:
                if isinstance(exc, ConfigError) or is_fatal(exc):
                    with db_session() as s:
                        finalize_job(s, uuid.UUID(job_id), "failed", reason=str(exc))
                raise
            if not json_out:
                console.print(state.describe(), markup=False)
            if state.done or not wait:
                break
            time.sleep(settings.batch_poll_seconds)
        if state.done:
            with db_session() as s:
                row = jobs.get_job(s, job_id)
                if row.status is JobStatus.PROCESSING:
                    finalize_job(s, row.id, "complete")
        data = read_job(job_id)
        data.pop("stale", None)
        data["batches"] = state.__dict__
        results.append(data)
        if not json_out and data["status"] != JobStatus.PROCESSING.value:
            console.print(describe_outcome(data), markup=False)
    if json_out:
        emit_json(results if job is None else results[0])


@app.command("exec", hidden=True)
def exec_(job: str, force: Annotated[bool, typer.Option("--force")] = False) -> None:
    """Run an existing job's flow in the foreground (used by --no-wait)."""
    data = read_job(job)
    data = wait_local(JobKind(data["kind"]), data["project"], data["id"], force=force,
                       show=False)
    if data["status"] == JobStatus.PROCESSING.value and (data.get("parameters") or {}).get(
            "batch"):
        report_waiting(data, json_out=False)  # submitted: `run collect` finishes it
        return
    console.print(describe_outcome(data), markup=False)
    exit_for(data["status"])
