"""How `extractflow run …` launches a job's flow and reports its end.

Three ways, one outcome: the flow runs in this process with a progress bar (default), in a
detached process (``--no-wait``), or as a deployment on a Prefect server (``--deployment``).
When ``extractflow server start`` runs, the first two hand the job to its run host instead
(:mod:`flows.run_host`: the same flow, already imported), and fall back to this process
whenever the host cannot take it.
Whichever it is, the job row already exists, so a flow that cannot be launched leaves no
PENDING job behind, Ctrl-C cancels the job keeping its work, and the exit code says how the
job ended (0 COMPLETE, 11 FAILED, 12 CANCELLED).
"""

from __future__ import annotations

import threading
import uuid
from typing import TYPE_CHECKING, Any

import typer

from config.settings import get_settings
from extraction.cli._common import (
    EXIT_RUN_CANCELLED,
    EXIT_RUN_FAILED,
    console,
    db_session,
    emit_json,
    err_console,
    quiet_prefect_console,
)
from extraction.cli._progress import describe_outcome, follow_job, read_job
from extraction.cli._signals import interrupted, interrupts_raise
from extraction.models import JobKind, JobStatus, ProcessingJob
from extraction.run import jobs

if TYPE_CHECKING:
    from flows.run_host_client import HostedJob

__all__ = ["exit_for", "launch", "report", "report_waiting", "wait_local"]


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
    _cancel_for_ctrl_c(job_id)


def _cancel_for_ctrl_c(job_id: str) -> None:
    """Cancel the job through its row (the run watches it), unless it has ended."""
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


def _hand_to_host(kind: JobKind, project: str, job_id: str, *, force: bool, show: bool
                  ) -> HostedJob | None:
    """The job, taken by the local server's run host; None when there is none or it cannot
    take this job (said when ``show``, with what to do)."""
    from flows.local_server import run_host
    from flows.run_host_client import hand_over

    hosted, why_not = hand_over(run_host(), job_id=job_id, kind=kind.value, project=project,
                                force=force)
    if why_not and show:
        err_console.print(f"Running here, not on the run host: {why_not}; restart it with "
                          "`extractflow server stop && extractflow server start`.",
                          markup=False, highlight=False)
    return hosted


def _wait_hosted(hosted: HostedJob, show: bool) -> dict[str, Any]:
    """Follow a job the run host runs; Ctrl-C cancels it (its work is kept)."""
    from flows.local_server import connect

    job_id = hosted.job_id
    connect()  # for the run's link: the host's server is the local one
    with interrupts_raise():
        try:
            link = _run_link(job_id, wait=30.0) if show else None
            if link:
                console.print(f"Flow run: {link}", markup=False)
            follow_job(job_id, alive=hosted.running, show=show, interval=0.1)
        except KeyboardInterrupt:
            err_console.print("Cancelling… (everything done is kept)")
            _cancel_for_ctrl_c(job_id)
            _wait_until(lambda: not hosted.running(), seconds=60)
    data = read_job(job_id)
    if data["status"] not in {s.value for s in jobs.TERMINAL}:
        found = hosted.status()
        data["error"] = data.get("error") or (
            (found or {}).get("error") or (found or {}).get("message")
            or "the run host is gone (killed?) and the job did not end; everything done is "
               f"kept: finish it with `extractflow run resume {job_id[:8]} --force`")
    return data


def _wait_until(done: Any, seconds: float) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(0.2)


def wait_local(kind: JobKind, project: str, job_id: str, *, force: bool, show: bool
                ) -> dict[str, Any]:
    """Run the job's flow to its end — on the run host when it takes it, else here — and
    return the job as it ended."""
    hosted = _hand_to_host(kind, project, job_id, force=force, show=show)
    if hosted is not None:
        return _wait_hosted(hosted, show)
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


def launch(kind: JobKind, data: dict[str, Any], *, no_wait: bool, deployment: bool,
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
            report(read_job(job_id), json_out, started=True)
            return
        report(follow_job(job_id, show=not json_out), json_out)
        return
    if no_wait and _hand_to_host(kind, project, job_id, force=force, show=not json_out):
        if not json_out:
            console.print(f"Job {job_id} started on the run host; follow it with "
                          f"`extractflow job watch {job_id[:8]}`")
        report(read_job(job_id), json_out, started=True)
        return
    if no_wait:
        from flows.launch import spawn_local

        log_path = settings.home / "runs" / f"{job_id}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        spawn_local(job_id, force=force, log_path=log_path)
        if not json_out:
            console.print(f"Job {job_id} started in the background (output: {log_path}); "
                          f"follow it with `extractflow job watch {job_id[:8]}`")
        report(read_job(job_id), json_out, started=True)
        return
    if not json_out:
        console.print(f"Job {job_id} ({kind.value}, {data['documents_total']} documents, "
                      f"mode {data['mode']}, model {data['model']})")
    report(wait_local(kind, project, job_id, force=force, show=not json_out), json_out)


def report(data: dict[str, Any], json_out: bool, *, started: bool = False) -> None:
    data.pop("stale", None)
    if not started and data["status"] == JobStatus.PROCESSING.value \
            and (data.get("parameters") or {}).get("batch"):
        report_waiting(data, json_out)
        return
    if json_out:
        emit_json(data)
    elif not started:
        style = {"COMPLETE": "green", "FAILED": "red", "CANCELLED": "yellow"}.get(
            data["status"], "white")
        console.print(f"[{style}]{describe_outcome(data)}[/]", markup=True, highlight=False)
    if not started:
        exit_for(data["status"])


def report_waiting(data: dict[str, Any], json_out: bool) -> None:
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


def exit_for(status: str) -> None:
    """Exit with the run's outcome: 0 COMPLETE, 11 FAILED, 12 CANCELLED (see the README)."""
    if status == JobStatus.FAILED.value:
        raise typer.Exit(EXIT_RUN_FAILED)
    if status != JobStatus.COMPLETE.value:
        raise typer.Exit(EXIT_RUN_CANCELLED if status == JobStatus.CANCELLED.value
                         else EXIT_RUN_FAILED)
