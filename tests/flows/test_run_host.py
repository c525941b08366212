"""The run host: ``extractflow server start`` 's warm process that runs the CLI's jobs.

Real processes throughout: ``extractflow server start`` (a real ``prefect server`` and the
host), ``extractflow run …`` commands as a user types them, the fake LLM server over HTTP.
The host must run the job the CLI hands it — the same flow run a CLI run would create — and
the CLI must keep every promise it makes without it: Ctrl-C cancels keeping the work, a
command with other settings runs itself, ``server stop`` cancels the host's jobs cleanly,
and a host killed mid-run leaves a job ``run resume`` finishes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from extraction import db
from flows import local_server
from flows.run_host_client import TOKEN_HEADER
from testing.fake_llm_server import FakeLLMServer
from testing.run_factory import add_trial_documents, make_project
from tests.flows.conftest import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


class Machine:
    """One user's machine: a home, a database, an environment, the commands they type."""

    def __init__(self, home: Path, llm: FakeLLMServer) -> None:
        self.home, self.llm = home, llm
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("PREFECT_", "EXTRACTFLOW_"))}
        self.env.update({
            "EXTRACTFLOW_HOME": str(home),
            "EXTRACTFLOW_DATABASE_URL": f"sqlite:///{home / 'extractflow.db'}",
            "EXTRACTFLOW_LLM_BASE_URL": llm.base_url,
            "EXTRACTFLOW_LLM_API_KEY": "sk-test",
            "EXTRACTFLOW_LLM_MODEL": "fake-model",
            "EXTRACTFLOW_LLM_BACKOFF_BASE": "0.01",
            "EXTRACTFLOW_DOCUMENTS_PER_CHUNK": "2",
            "EXTRACTFLOW_LLM_CONCURRENCY": "2",
            "EXTRACTFLOW_CANCEL_POLL_SECONDS": "0.1",
            "EXTRACTFLOW_PROGRESS_FLUSH_SECONDS": "0.2",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",  # the test reads the command's lines as they come
        })
        self.url = self.env["EXTRACTFLOW_DATABASE_URL"]

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "extraction", *args]

    def run(self, *args: str, extra: dict[str, str] | None = None, timeout: float = 300
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), check=False,
                              env={**self.env, **(extra or {})},
                              cwd=self.home, capture_output=True, text=True, timeout=timeout)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.command(*args), env=self.env, cwd=self.home,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def info(self) -> local_server.ServerInfo:
        return local_server._read(Settings(home=self.home))  # type: ignore[return-value]

    def ensure_started(self) -> None:
        """``server start`` (at once when it runs with its host)."""
        started = self.run("server", "start", "--port", str(free_port()), timeout=300)
        assert started.returncode == 0 and self.info().host_pid, started.stdout + started.stderr

    def add_documents(self, n: int, start: int) -> None:
        """``n`` new documents in the project, so a full run has work that is not re-used."""
        from extraction import codebook

        with db.session_scope(self.url) as s:
            add_trial_documents(s, codebook.get_project(s, "trials"), n, start=start)

    @contextlib.contextmanager
    def full_run_under_way(self, latency: float) -> Iterator[tuple[subprocess.Popen[str], str]]:
        """``run full trials`` in a process of its own, once a document is done; the LLM
        answers in ``latency`` seconds until the block ends."""
        self.llm.latency = latency
        try:
            command = self.start("run", "full", "trials")
            job_id = _wait_for_line(command, "Job ")
            _wait(lambda: self.job(job_id)["documents_completed"] >= 1)
            yield command, job_id
        finally:
            self.llm.latency = 0.0

    def host_log(self) -> str:
        return Path(self.info().host_log or "").read_text()

    def job(self, job_id: str) -> dict[str, Any]:
        from extraction.run import jobs, views

        with db.session_scope(self.url) as s:
            row = jobs.get_job(s, job_id)
            return views.job_to_dict(row, project_name=row.project.name)


@pytest.fixture(scope="module")
def one_machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    """One home and server for the module (a server and its host take ~20 s to start)."""
    home = tmp_path_factory.mktemp("host-home")
    with FakeLLMServer(model="fake-model") as llm:
        box = Machine(home, llm)
        db.upgrade_database(box.url)
        with db.session_scope(box.url) as s:
            add_trial_documents(s, make_project(s), 12)
        db.dispose_engines()
        try:
            box.ensure_started()
            yield box
        finally:
            box.run("server", "stop", timeout=120)


@pytest.fixture
def machine(one_machine: Machine) -> Machine:
    """The module's machine with its server and run host running (a test may stop them)."""
    one_machine.ensure_started()
    return one_machine


def _job_id(output: str) -> str:
    return next(line.split()[1] for line in output.splitlines() if line.startswith("Job "))


def test_the_cli_hands_its_run_to_the_host_and_the_ui_shows_the_same_run(
        machine: Machine) -> None:
    done = machine.run("run", "sample", "trials", "--n", "3", "--seed", "4")
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = _job_id(done.stdout)
    assert "COMPLETE: 3 of 3 documents done" in done.stdout
    assert f"Flow run: {machine.info().ui_url}/runs/flow-run/" in done.stdout
    assert "Running here" not in done.stderr
    assert f"job {job_id}: SAMPLE run of project trials starts" in machine.host_log()
    # the flow run is the one a CLI run creates: its name, tags and the parameters that ran
    job = machine.job(job_id)
    token = (Path(machine.info().home) / "run-host.token").read_text()
    with urllib.request.urlopen(f"{machine.info().api_url}/flow_runs/{job['flow_run_id']}",
                                timeout=10) as response:
        run = json.loads(response.read())
    assert run["name"] == f"trials/sample-{job_id[:8]}"
    assert {"project:trials", "kind:sample"} <= set(run["tags"])
    assert (run["parameters"]["n"], run["parameters"]["seed"]) == (3, 4)
    assert run["state_type"] == "COMPLETED"
    # only with the token
    request = urllib.request.Request(f"http://127.0.0.1:{machine.info().host_port}/health",
                                     headers={TOKEN_HEADER: token[:-1] + "x"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 403


def test_a_command_with_other_settings_runs_itself_and_says_why(machine: Machine) -> None:
    done = machine.run("run", "sample", "trials", "--n", "2", "--seed", "5",
                       extra={"EXTRACTFLOW_LLM_CONCURRENCY": "3"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Running here, not on the run host: the run host runs with other settings" \
        in done.stderr
    assert f"job {_job_id(done.stdout)}" not in machine.host_log()


def test_ctrl_c_cancels_the_hosted_run_and_keeps_its_work(machine: Machine) -> None:
    with machine.full_run_under_way(latency=1.0) as (command, job_id):
        command.send_signal(signal.SIGINT)
        out, err = command.communicate(timeout=120)
    assert command.returncode == 12, out + err  # CANCELLED
    job = machine.job(job_id)
    assert job["status"] == "CANCELLED" and job["documents_completed"] >= 1
    assert "Ctrl-C" in (job.get("error") or "")
    _wait(lambda: f"job {job_id}: the flow run ended CANCELLED" in machine.host_log())
    again = machine.run("run", "sample", "trials", "--n", "2", "--seed", "6")
    assert again.returncode == 0 and "Running here" not in again.stderr  # the host goes on


def test_a_cancel_in_the_prefect_ui_stops_the_hosted_run(machine: Machine) -> None:
    machine.add_documents(6, start=100)
    with machine.full_run_under_way(latency=1.0) as (command, job_id):
        flow_run_id = machine.job(job_id)["flow_run_id"]
        request = urllib.request.Request(  # what the UI's Cancel button sends
            f"{machine.info().api_url}/flow_runs/{flow_run_id}/set_state", method="POST",
            data=json.dumps({"state": {"type": "CANCELLING"}, "force": True}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status in (200, 201)
        out, err = command.communicate(timeout=120)
    assert command.returncode == 12, out + err
    job = machine.job(job_id)
    assert job["status"] == "CANCELLED" and "cancelled in Prefect" in job["error"]
    assert job["documents_completed"] < job["documents_total"]


def test_a_killed_host_leaves_a_job_that_resume_finishes_and_start_brings_it_back(
        machine: Machine) -> None:
    machine.add_documents(6, start=200)
    with machine.full_run_under_way(latency=1.0) as (command, job_id):
        killed = machine.info().host_pid
        os.kill(killed, signal.SIGKILL)  # type: ignore[arg-type]
        out, err = command.communicate(timeout=120)
    assert command.returncode != 0
    assert f"extractflow run resume {job_id[:8]} --force" in out + err
    assert machine.job(job_id)["status"] == "PROCESSING"  # nothing done is lost
    resumed = machine.run("run", "resume", job_id[:8], "--force")  # no host: runs itself
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    job = machine.job(job_id)
    assert job["status"] == "COMPLETE" and job["documents_completed"] == job["documents_total"]
    again = machine.run("server", "start")  # the server runs: a new host
    assert again.returncode == 0 and "Already running" in again.stdout, again.stdout
    assert machine.info().host_pid not in (None, killed)


def test_server_stop_cancels_the_hosts_runs_and_their_work_stays(machine: Machine) -> None:
    machine.add_documents(6, start=300)
    machine.llm.latency = 1.5
    try:
        submitted = machine.run("run", "full", "trials", "--no-wait")
        assert "started on the run host" in submitted.stdout, \
            submitted.stdout + submitted.stderr
        job_id = _job_id(submitted.stdout)
        _wait(lambda: machine.job(job_id)["documents_completed"] >= 1)
        host_log = machine.info().host_log
        stopped = machine.run("server", "stop", timeout=120)
    finally:
        machine.llm.latency = 0.0
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    job = machine.job(job_id)
    assert job["status"] == "CANCELLED" and "run host stopped" in job["error"]
    assert 1 <= job["documents_completed"] < job["documents_total"]
    assert "run host stopped" in Path(host_log or "").read_text()


def _wait_for_line(command: subprocess.Popen[str], prefix: str) -> str:
    """The job id from the command's first ``Job …`` line."""
    assert command.stdout is not None
    for line in command.stdout:
        if line.startswith(prefix):
            return line.split()[1]
    raise AssertionError(f"no '{prefix}' line; stderr: {command.stderr.read()}")  # type: ignore[union-attr]


def _wait(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
