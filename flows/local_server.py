"""A local Prefect server for one machine: ``extractflow server start|stop|status``.

The server is ``prefect server start`` on 127.0.0.1, started in the background in a session
of its own (it outlives the command), with its SQLite database and its ``PREFECT_HOME``
under ``$EXTRACTFLOW_HOME/prefect-server``. A state file there records its pid and URLs.

While it runs, every extractflow command that starts a flow uses it (:func:`connect`, called
by :func:`flows.bootstrap.bootstrap`): runs appear in its UI, and a command skips the start of
Prefect's temporary server, which is most of a small run's fixed cost. An explicit
``PREFECT_API_URL`` always wins; a state file whose server is gone is ignored.

This module does not import Prefect: the server is a child process, and the CLI's ``server``
commands stay fast.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from config.settings import Settings, get_settings
from extraction.errors import ConfigError

__all__ = ["ServerInfo", "connect", "flow_run_url", "running", "start", "status", "stop"]

_STATE = "server.json"


@dataclass(frozen=True)
class ServerInfo:
    """A local server as recorded in its state file."""

    pid: int
    port: int
    api_url: str
    ui_url: str
    home: str
    log: str


def _dir(settings: Settings) -> Path:
    return settings.home / "prefect-server"


def _read(settings: Settings) -> ServerInfo | None:
    path = _dir(settings) / _STATE
    try:
        return ServerInfo(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _healthy(api_url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def running(settings: Settings | None = None) -> ServerInfo | None:
    """The local server, if its process is alive and its API answers."""
    info = _read(settings or get_settings())
    if info is None or not _alive(info.pid) or not _healthy(info.api_url):
        return None
    return info


def _prefect_command() -> list[str]:
    beside = Path(sys.executable).with_name("prefect")
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "prefect"]


def start(settings: Settings | None = None, *, port: int | None = None,
          timeout: float = 120.0) -> tuple[ServerInfo, bool]:
    """Start the server in the background, unless it runs; returns it and whether it was
    started now. Waits until its API answers.

    Raises:
        ConfigError: The port is taken by something else, or the server did not start
            (the message names its log file).
    """
    settings = settings or get_settings()
    current = running(settings)
    if current is not None:
        return current, False
    port = port or settings.server_port
    folder = _dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    api_url = f"http://127.0.0.1:{port}/api"
    if _healthy(api_url, timeout=0.5):
        raise ConfigError(f"port {port} already has a Prefect server that extractflow did not "
                          f"start; use it with PREFECT_API_URL={api_url}, or pick another "
                          "port with --port", field="server_port")
    log = folder / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env.update({
        "PREFECT_HOME": str(folder),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{folder / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": api_url,
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    })
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*_prefect_command(), "server", "start", "--host", "127.0.0.1", "--port",
             str(port)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,  # outlives this command and its terminal's Ctrl-C
        )
    info = ServerInfo(pid=process.pid, port=port, api_url=api_url,
                      ui_url=f"http://127.0.0.1:{port}", home=str(folder), log=str(log))
    deadline = time.monotonic() + timeout
    while not _healthy(api_url):
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                _terminate(process.pid)
            raise ConfigError(f"the Prefect server did not start (see {log})",
                              field="server_port")
        time.sleep(0.3)
    (folder / _STATE).write_text(json.dumps(asdict(info)))
    return info, True


def _terminate(pid: int, wait: float = 15.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + wait
    while _alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.2)
    if _alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _reap(pid: int) -> None:
    """Reap ``pid`` if it is our child (a server started by this process), so it is gone."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop(settings: Settings | None = None) -> ServerInfo | None:
    """Stop the local server; returns what was stopped, None if none was running."""
    settings = settings or get_settings()
    info = _read(settings)
    if info is None:
        return None
    if _alive(info.pid):
        _terminate(info.pid)
    (_dir(settings) / _STATE).unlink(missing_ok=True)
    return info


def status(settings: Settings | None = None) -> dict[str, object]:
    """Whether the local server runs, and where."""
    settings = settings or get_settings()
    info = _read(settings)
    up = running(settings)
    data: dict[str, object] = {"running": up is not None}
    if info is not None:
        data.update(asdict(info))
    data["in_use"] = up is not None and os.environ.get("PREFECT_API_URL") in (None, up.api_url)
    return data


def connect(settings: Settings | None = None) -> str | None:
    """Point this process's Prefect at the local server when it runs and no
    ``PREFECT_API_URL`` is set; returns the API URL in use, if any."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    info = running(settings)
    if info is None:
        return None
    os.environ["PREFECT_API_URL"] = info.api_url
    context = sys.modules.get("prefect.context")
    if context is not None:  # Prefect read its settings at import: make it read them again
        context.refresh_global_settings_context()
    return info.api_url


def flow_run_url(flow_run_id: str, api_url: str | None = None) -> str | None:
    """The UI page of a flow run, when a Prefect server is in use."""
    api_url = api_url or os.environ.get("PREFECT_API_URL")
    if not api_url:
        return None
    ui = os.environ.get("PREFECT_UI_URL") or api_url.rstrip("/").removesuffix("/api")
    return f"{ui}/runs/flow-run/{flow_run_id}"
