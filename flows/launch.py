"""Start, trigger and cancel runs of the job flows — what the CLI needs from Prefect.

* :func:`run_local` runs a job's flow in this process (Prefect's ephemeral API unless
  ``PREFECT_API_URL`` points at a server) and returns its final state.
* :func:`spawn_local` starts ``extractflow run exec JOB`` as a detached process, for
  ``--no-wait``: the job goes on after the CLI returns.
* :func:`trigger_deployment` asks a Prefect server to run the deployed flow (``--deployment``).
* :func:`cancel_flow_run` asks the server to cancel a flow run (workers and ``serve`` kill it
  within a second); skipped when no server is configured, because then the run is in-process
  and watches its job row instead.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from extraction.errors import ConfigError
from extraction.models import JobKind

__all__ = [
    "cancel_flow_run",
    "prefect_server_configured",
    "run_local",
    "spawn_local",
    "trigger_deployment",
]

_REPO_ROOT = Path(__file__).resolve().parent.parent


def _flow_for(kind: JobKind) -> Any:
    if JobKind(kind) is JobKind.SAMPLE:
        from flows.sample_run import sample_run

        return sample_run
    from flows.full_run import full_run

    return full_run


def prefect_server_configured() -> bool:
    """Whether a Prefect API server is configured (else Prefect runs an ephemeral one)."""
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def run_local(kind: JobKind, project: str, job_id: str, *, force: bool = False,
              parameters: dict[str, Any] | None = None) -> Any:
    """Run the job's flow here, to the end; returns the flow run's final Prefect state.

    ``parameters`` are the ones the job really runs with (see
    :func:`extraction.run.report.flow_parameters`): passed in full, the flow run's
    Parameters tab shows them instead of the flow's defaults.
    """
    from flows.bootstrap import bootstrap

    bootstrap(llm_stack=True)  # before Prefect is imported: no settings re-read needed
    from prefect import tags

    from flows._run import flow_run_name_for, run_tags
    from flows._server import start_embedded_server

    start_embedded_server()
    arguments = {**(parameters or {}), "project": project, "job_id": job_id, "force": force}
    flow = _flow_for(kind).with_options(
        flow_run_name=flow_run_name_for(kind, job_id, project))
    with tags(*run_tags(kind, project, job_id)):
        return asyncio.run(flow(**arguments, return_state=True))


def spawn_local(job_id: str, *, force: bool = False, log_path: Path | None = None
                ) -> subprocess.Popen[bytes]:
    """Run ``extractflow run exec JOB`` in a detached process (it outlives this one)."""
    command = [sys.executable, "-m", "extraction", "run", "exec", str(job_id)]
    if force:
        command.append("--force")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
    output = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=output, stderr=output, env=env,
        start_new_session=True,
    )


def trigger_deployment(deployment: str, parameters: dict[str, Any], *,
                       flow_run_name: str | None = None, tags: list[str] | None = None) -> str:
    """Create a flow run of ``deployment`` on the Prefect server; returns its id."""
    if not prefect_server_configured():
        raise ConfigError(
            "--deployment needs a Prefect server: set PREFECT_API_URL "
            "(e.g. http://127.0.0.1:4200/api) and deploy the flows with `prefect deploy --all`",
            field="PREFECT_API_URL",
        )
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    try:
        flow_run = run_deployment(deployment, parameters=parameters, timeout=0,
                                  as_subflow=False, flow_run_name=flow_run_name, tags=tags)
    except ObjectNotFound as exc:
        raise ConfigError(
            f"the Prefect server has no deployment '{deployment}'; deploy it with "
            "`prefect deploy --all` (see prefect.yaml)",
            field="deployment",
        ) from exc
    except Exception as exc:
        raise ConfigError(
            f"could not reach the Prefect server to start '{deployment}': {exc}",
            field="PREFECT_API_URL",
        ) from exc
    return str(flow_run.id)


def cancel_flow_run(flow_run_id: str | None) -> bool:
    """Best effort: ask the Prefect server to cancel the run. True if it accepted."""
    if not flow_run_id or not prefect_server_configured():
        return False
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    async def cancel() -> bool:
        async with get_client() as client:
            run = await client.read_flow_run(uuid.UUID(flow_run_id))
            if run.state is not None and run.state.is_final():
                return False
            result = await client.set_flow_run_state(
                uuid.UUID(flow_run_id), Cancelling(message="cancelled with extractflow job cancel"),
                force=True,
            )
            return result.status.value == "ACCEPT"

    try:
        return asyncio.run(cancel())
    except Exception:  # noqa: BLE001 - best effort: the job row is already CANCELLED
        return False
