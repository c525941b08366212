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

import threading
import uuid
from typing import Annotated, Any

import typer

from config.settings import get_settings
from extraction.cli._common import (
    EXIT_RUN_CANCELLED,
    EXIT_RUN_FAILED,
    JsonOption,
    console,
    db_session,
    emit_json,
    err_console,
    new_app,
    quiet_prefect_console,
)
from extraction.cli._progress import describe_outcome, follow_job, read_job
from extraction.cli._signals import interrupted, interrupts_raise
from extraction.errors import ValidationError
from extraction.models import JobKind, JobStatus, ProcessingJob
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


def _estimate(kind: JobKind, project: str, *, json_out: bool, max_cost: float | None = None,
              **options: Any) -> None:
    """Print the run's forecast; nothing is kept (a prompt generated on the way neither)."""
    from extraction.run.forecast import forecast_run

    settings = get_settings()
    with db_session() as s:
        forecast = forecast_run(s, settings, kind=kind, project=project, **options)
        s.rollback()
    cap = max_cost if max_cost is not None else settings.max_cost_usd
    if cap is not None and forecast.cost_sync_usd:
        share = min(1.0, cap / forecast.cost_sync_usd)
        forecast.notes.append(f"the ${cap:.4f} cap covers about {share:.0%} of this run at "
                              "the sync price" + ("" if share < 1 else ": it should not stop"))
    if json_out:
        emit_json(forecast.to_dict())
        return
    for line in forecast.lines():
        console.print(line, markup=False, highlight=False)


def _check_cap(settings: Any, model: str | None, cap: float | None) -> None:
    """A cap needs the model's price: refuse before anything starts."""
    from extraction.llm.prices import load_prices

    cap = cap if cap is not None else settings.max_cost_usd
    if cap is not None and load_prices(settings).get(model) is None:
        raise ValidationError(
            f"--max-cost needs the price of model '{model}', which the price table does not "
            "have; add it to a price file (EXTRACTFLOW_LLM_PRICES_FILE, see docs/cost.md) or "
            "run without a cap", field="max_cost")


def _create(kind: JobKind, project: str, *, allow_large: bool = False, json_out: bool = False,
            max_cost: float | None = None, **options: Any) -> dict[str, Any]:
    """Create the job, after checking its estimated cost against the settings' guard."""
    from extraction.run.estimate import estimate_job

    settings = get_settings()
    with db_session() as s:
        job = create_run_job(s, settings, kind=kind, project=project, max_cost_usd=max_cost,
                             **options)
        _check_cap(settings, job.model, max_cost)
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


def _forget(job_id: str) -> None:
    """Remove a job that never started (its flow could not be launched)."""
    with db_session() as s:
        job = s.get(ProcessingJob, uuid.UUID(job_id))
        if job is not None and job.status is JobStatus.PENDING:
            s.delete(job)


def _flow_parameters(job_id: str) -> dict[str, Any]:
    """The parameters the job runs with, for the flow run (its Parameters tab shows them)."""
    from extraction.run.report import flow_parameters

    with db_session() as s:
        return flow_parameters(jobs.get_job(s, job_id))


def _run_in_thread(kind: JobKind, project: str, job_id: str, force: bool) -> tuple[
        threading.Thread, dict[str, Any]]:
    from flows.bootstrap import bootstrap
    from flows.launch import run_local

    quiet_prefect_console()
    bootstrap(llm_stack=True)
    parameters = _flow_parameters(job_id)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["state"] = run_local(kind, project, job_id, force=force,
                                     parameters=parameters)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"run-{job_id[:8]}", daemon=True)
    thread.start()
    return thread, box


def _interrupt(job_id: str) -> None:
    """Ctrl-C or SIGTERM: no new LLM call starts, the job is cancelled, its work is kept."""
    from flows._limits import stop_new_calls

    stop_new_calls()
    interrupted.set()
    err_console.print("Cancelling… (no new LLM call starts; everything done is kept)")
    with db_session() as s:
        job = jobs.get_job(s, job_id)
        if job.status not in jobs.TERMINAL:
            jobs.cancel_job(s, job, reason="cancelled with Ctrl-C")


def _run_link(job_id: str, flow_run_id: str | None = None, *, wait: float = 0.0
              ) -> str | None:
    """The UI page of the job's flow run when a Prefect server is in use (else None); waits
    up to ``wait`` seconds for a local run to record its flow run."""
    import os
    import time

    from flows.local_server import flow_run_url

    if not os.environ.get("PREFECT_API_URL"):
        return None
    deadline = time.monotonic() + wait
    while flow_run_id is None:
        flow_run_id = read_job(job_id).get("flow_run_id")
        if flow_run_id or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return flow_run_url(flow_run_id) if flow_run_id else None


def _wait_local(kind: JobKind, project: str, job_id: str, *, force: bool, show: bool
                ) -> dict[str, Any]:
    with interrupts_raise():
        thread, box = _run_in_thread(kind, project, job_id, force)
        try:
            link = _run_link(job_id, wait=30.0) if show else None
            if link:
                console.print(f"Flow run: {link}", markup=False)
            follow_job(job_id, alive=thread.is_alive, show=show)
            thread.join()
        except KeyboardInterrupt:
            _interrupt(job_id)
            try:
                thread.join(timeout=60)
            except KeyboardInterrupt:  # a second Ctrl-C: leave now, the job is CANCELLED
                err_console.print("Stopped without waiting for calls in flight.")
                raise typer.Exit(EXIT_RUN_CANCELLED) from None
    error = box.get("error")
    if error is not None and not isinstance(error, (KeyboardInterrupt, SystemExit)):
        raise error
    state = box.get("state")
    data = read_job(job_id)
    if data["status"] not in {s.value for s in jobs.TERMINAL} and state is not None \
            and getattr(state, "message", None):
        data["error"] = data.get("error") or state.message
    return data


def _launch(kind: JobKind, data: dict[str, Any], *, no_wait: bool, deployment: bool,
            json_out: bool, force: bool = False, created: bool = True) -> None:
    job_id, project = data["id"], data["project"]
    settings = get_settings()
    if deployment:
        from flows.local_server import connect

        connect(settings)  # `extractflow server start`'s server, if no PREFECT_API_URL
        from flows.launch import trigger_deployment

        name = settings.deployment_sample_run if kind is JobKind.SAMPLE \
            else settings.deployment_full_run
        from extraction.run.report import run_label, run_tags

        try:
            flow_run_id = trigger_deployment(
                name, {**_flow_parameters(job_id), "force": force},
                flow_run_name=run_label(project, kind, job_id),
                tags=run_tags(kind, project, job_id))
        except Exception:
            if created:  # nothing ran: do not leave a PENDING job behind
                _forget(job_id)
            raise
        with db_session() as s:
            jobs.attach_flow_run(s, jobs.get_job(s, job_id), flow_run_id)
        if not json_out:
            console.print(f"Job {job_id} submitted to deployment {name} (flow run {flow_run_id})")
            link = _run_link(job_id, flow_run_id)
            if link:
                console.print(f"Flow run: {link}", markup=False)
        if no_wait:
            _report(read_job(job_id), json_out, started=True)
            return
        _report(follow_job(job_id, show=not json_out), json_out)
        return
    if no_wait:
        from flows.launch import spawn_local

        log_path = settings.home / "runs" / f"{job_id}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        spawn_local(job_id, force=force, log_path=log_path)
        if not json_out:
            console.print(f"Job {job_id} started in the background (output: {log_path}); "
                          f"follow it with `extractflow job watch {job_id[:8]}`")
        _report(read_job(job_id), json_out, started=True)
        return
    if not json_out:
        console.print(f"Job {job_id} ({kind.value}, {data['documents_total']} documents, "
                      f"mode {data['mode']}, model {data['model']})")
    _report(_wait_local(kind, project, job_id, force=force, show=not json_out), json_out)


def _report(data: dict[str, Any], json_out: bool, *, started: bool = False) -> None:
    data.pop("stale", None)
    if not started and data["status"] == JobStatus.PROCESSING.value \
            and (data.get("parameters") or {}).get("batch"):
        _report_waiting(data, json_out)
        return
    if json_out:
        emit_json(data)
    elif not started:
        style = {"COMPLETE": "green", "FAILED": "red", "CANCELLED": "yellow"}.get(
            data["status"], "white")
        console.print(f"[{style}]{describe_outcome(data)}[/]", markup=True, highlight=False)
    if not started:
        _exit_for(data["status"])


def _report_waiting(data: dict[str, Any], json_out: bool) -> None:
    """A batch run handed its requests to the provider: say how to collect the answers."""
    from extraction.run.batch import batch_state

    state = batch_state(data["id"])
    data["batches"] = state.__dict__
    if json_out:
        emit_json(data)
        return
    console.print(f"Job {data['id']} submitted {state.batches} provider batches "
                  f"({state.lines_total} requests); the provider answers within 24 h. "
                  f"Collect with `extractflow run collect {data['id'][:8]}` (--wait to wait), "
                  "or let the collect-batches deployment do it.", markup=False)


def _exit_for(status: str) -> None:
    """Exit with the run's outcome: 0 COMPLETE, 11 FAILED, 12 CANCELLED (see the README)."""
    if status == JobStatus.FAILED.value:
        raise typer.Exit(EXIT_RUN_FAILED)
    if status != JobStatus.COMPLETE.value:
        raise typer.Exit(EXIT_RUN_CANCELLED if status == JobStatus.CANCELLED.value
                         else EXIT_RUN_FAILED)


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
        _estimate(JobKind.SAMPLE, project, json_out=json_out, n=n, seed=seed,
                  document_ids=document_ids, mode=mode, model=model, max_cost=max_cost)
        return
    data = _create(JobKind.SAMPLE, project, n=n, seed=seed, document_ids=document_ids,
                   mode=mode, model=model, allow_large=allow_large, json_out=json_out,
                   max_cost=max_cost)
    _launch(JobKind.SAMPLE, data, no_wait=no_wait, deployment=deployment, json_out=json_out)


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
        _estimate(JobKind.FULL, project, json_out=json_out, filename_glob=document_filter,
                  mode=mode, model=model, max_cost=max_cost)
        return
    data = _create(JobKind.FULL, project, filename_glob=document_filter, mode=mode, model=model,
                   allow_large=allow_large, json_out=json_out, max_cost=max_cost,
                   shards=shards, batch=batch)
    _launch(JobKind.FULL, data, no_wait=no_wait, deployment=deployment, json_out=json_out)


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
            _new_cap(s, row, max_cost, settings)
        if not budget_stopped and row.status is JobStatus.PROCESSING and not force \
                and not jobs.is_stale(row, after_seconds=settings.job_stale_seconds):
            open_job(s, row.id, stale_after=settings.job_stale_seconds)  # raises the conflict
        if not budget_stopped and row.status not in (JobStatus.PROCESSING, JobStatus.PENDING):
            open_job(s, row.id, stale_after=settings.job_stale_seconds)  # raises the state error
        data = views.job_to_dict(row, project_name=row.project.name)
    _launch(JobKind(data["kind"]), data, no_wait=no_wait, deployment=deployment,
            json_out=json_out, force=True, created=False)


def _new_cap(s: Any, row: ProcessingJob, max_cost: float | None, settings: Any) -> None:
    """Store a resumed job's new cap; a job its cap stopped needs one above what it spent."""
    old = (row.parameters or {}).get("max_cost_usd")
    cap = max_cost if max_cost is not None else old
    if jobs.stopped_by_budget(row) and (max_cost is None or (old is not None and cap <= old)):
        spent = row.cost_usd or 0.0
        raise ValidationError(
            f"job {row.id} stopped at its budget cap (${spent:.4f} spent of "
            f"${float(old or 0):.4f}): resume it with a higher cap, e.g. --max-cost "
            f"{max(float(old or 0) * 2, spent + 0.01):.2f}", field="max_cost")
    _check_cap(settings, row.model, cap)
    row.parameters = {**(row.parameters or {}), "max_cost_usd": cap}
    s.flush()


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
    data = _wait_local(JobKind(data["kind"]), data["project"], data["id"], force=force,
                       show=False)
    if data["status"] == JobStatus.PROCESSING.value and (data.get("parameters") or {}).get(
            "batch"):
        _report_waiting(data, json_out=False)  # submitted: `run collect` finishes it
        return
    console.print(describe_outcome(data), markup=False)
    _exit_for(data["status"])
