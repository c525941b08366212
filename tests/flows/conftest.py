"""One real Prefect server for the session's slow flow tests, and how their workers stop.

Starting ``prefect server start`` and deploying this checkout's prefect.yaml take ~35 s on
2 cores; the deployment, shard and slot-reclaim tests share one server instead of starting
one per module (or per test). They do not need a pristine server: each test uses its own
database, its own fake LLM server and its own global-limit name, and looks up only its own
flow runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("prefect server did not become healthy")


def stop_worker(*processes: subprocess.Popen[bytes], grace: float = 3.0,
                group: bool = False) -> None:
    """Stop ``prefect worker start`` processes: SIGTERM to all, then SIGKILL to those still
    alive ``grace`` seconds later.

    Prefect's worker turns the SIGTERM into a SIGINT to itself and then often does not exit
    when it has no flow run left (measured: still alive after 15 s), so waiting longer only
    costs time. ``group``: each worker leads its own process group; signal all of it.
    """
    def send(process: subprocess.Popen[bytes], sig: int) -> None:
        try:
            if group:
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)
        except ProcessLookupError:
            pass

    alive = [p for p in processes if p.poll() is None]
    for process in alive:
        send(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in alive:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            send(process, signal.SIGKILL)
            process.wait(10)


@contextlib.contextmanager
def running_prefect_server(home: Path) -> Iterator[dict[str, str]]:
    """A real ``prefect server start`` on a free port with its home in ``home``; yields the
    environment its clients need (no EXTRACTFLOW_ settings: each test adds its own)."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EXTRACTFLOW_")},
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        "EXTRACTFLOW_CHECKOUT": str(ROOT),
        "PYTHONPATH": str(ROOT),
    }
    log = (home / "server.log").open("wb")
    server = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
    )
    try:
        _wait_healthy(env["PREFECT_API_URL"], server)
        yield env
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
        log.close()


def deploy_all(env: dict[str, str]) -> dict[str, str]:
    """The ``extractflow`` process work pool and every deployment of this checkout's
    prefect.yaml (``prefect deploy --all``) on the server of ``env``."""
    subprocess.run([PREFECT, "--no-prompt", "work-pool", "create", "extractflow",
                    "--type", "process"], env=env, check=True, cwd=ROOT, capture_output=True)
    deployed = subprocess.run([PREFECT, "--no-prompt", "deploy", "--all"], env=env,
                              cwd=ROOT, capture_output=True, text=True, check=False)
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    return env


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The session's real Prefect server (see the module docstring)."""
    with running_prefect_server(tmp_path_factory.mktemp("prefect-home")) as env:
        yield env


@pytest.fixture(scope="session")
def prefect_server(prefect_api: dict[str, str]) -> dict[str, str]:
    """The session's server with the work pool and the deployments."""
    return deploy_all(prefect_api)
