"""A local Prefect server for one machine: ``extractflow server start|stop|status``.

The server is ``prefect server start`` on 127.0.0.1, started in the background in a session
of its own (it outlives the command), with its SQLite database and its ``PREFECT_HOME``
under ``$EXTRACTFLOW_HOME/prefect-server``. A state file there records its pid and URLs.

While it runs, every extractflow command that starts a flow uses it (:func:`connect`, called
by :func:`flows.bootstrap.bootstrap`): runs appear in its UI, and a command skips the start of
Prefect's temporary server, which is most of a small run's fixed cost. An explicit
``PREFECT_API_URL`` always wins; a state file whose server is gone is ignored.

Beside it runs the run host (:mod:`flows.run_host`, ``run_host=False`` to do without): a warm
process that runs the CLI's jobs with Prefect and the LLM stack already imported, so
``extractflow run sample`` costs about what its database work does. Its token is in a file of
its own, readable by its owner only.

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
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from config.settings import Settings, get_settings
from extraction.errors import ConfigError

if TYPE_CHECKING:
    from flows.run_host_client import HostAddress

__all__ = ["ServerInfo", "connect", "flow_run_url", "run_host", "running", "start", "status",
           "stop"]

_STATE = "server.json"
_HOST_TOKEN = "run-host.token"


@dataclass(frozen=True)
class ServerInfo:
    """A local server as recorded in its state file."""

    pid: int
    port: int
    api_url: str
    ui_url: str
    home: str
    log: str
    host_pid: int | None = None
    host_port: int | None = None
    host_log: str | None = None


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
          timeout: float = 120.0, run_host: bool = True) -> tuple[ServerInfo, bool]:
    """Start the server in the background, unless it runs; returns it and whether it was
    started now. Waits until its API answers, and with ``run_host`` until the run host is
    ready (a host that does not start is left out: the CLI then runs jobs itself).

    Raises:
        ConfigError: The port is taken by something else, or the server did not start
            (the message names its log file).
    """
    settings = settings or get_settings()
    current = running(settings)
    if current is not None:
        if run_host and (current.host_pid is None or not _alive(current.host_pid)):
            current = _start_host(current, _dir(settings), timeout)  # it died: a new one
            (_dir(settings) / _STATE).write_text(json.dumps(asdict(current)))
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
    if run_host:
        info = _start_host(info, folder, timeout)
    (folder / _STATE).write_text(json.dumps(asdict(info)))
    return info, True


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_host(info: ServerInfo, folder: Path, timeout: float) -> ServerInfo:
    """Start the run host for the server ``info``; ``info`` with its pid and port once it
    answers, or unchanged (and the host stopped) if it does not within ``timeout``."""
    import secrets

    from flows.run_host_client import HostAddress

    token_file = folder / _HOST_TOKEN
    token_file.touch(mode=0o600)
    token_file.chmod(0o600)
    token = secrets.token_urlsafe(24)
    token_file.write_text(token)
    port, log = _free_port(), folder / "run-host.log"
    host_env = {**os.environ, "PREFECT_API_URL": info.api_url}
    root = str(Path(__file__).resolve().parent.parent)
    host_env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, host_env.get("PYTHONPATH")]))
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "flows.run_host", "--port", str(port), "--token-file",
             str(token_file)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=host_env,
            start_new_session=True)
    address = HostAddress(port=port, token=token)
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if address.request("GET", "/health", timeout=1.0)[0] == 200:
                return replace(info, host_pid=process.pid, host_port=port, host_log=str(log))
        except OSError:
            pass
        time.sleep(0.3)
    if process.poll() is None:
        _terminate(process.pid)
    return replace(info, host_log=str(log))


def run_host(settings: Settings | None = None) -> HostAddress | None:
    """Where the local server's run host listens, if it was started and is alive, and the
    server is the one in use (no ``PREFECT_API_URL`` pointing at another)."""
    settings = settings or get_settings()
    info = running(settings)
    if info is None or info.host_pid is None or info.host_port is None \
            or not _alive(info.host_pid) \
            or os.environ.get("PREFECT_API_URL") not in (None, info.api_url):
        return None
    from flows.run_host_client import HostAddress

    try:
        token = (_dir(settings) / _HOST_TOKEN).read_text().strip()
    except OSError:
        return None
    return HostAddress(port=info.host_port, token=token)


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
    if info.host_pid is not None and _alive(info.host_pid):
        from flows.run_host import STOP_GRACE_SECONDS

        _terminate(info.host_pid, wait=STOP_GRACE_SECONDS + 10)  # it cancels its jobs first
    if _alive(info.pid):
        _terminate(info.pid)
    (_dir(settings) / _STATE).unlink(missing_ok=True)
    (_dir(settings) / _HOST_TOKEN).unlink(missing_ok=True)
    return info


def status(settings: Settings | None = None) -> dict[str, object]:
    """Whether the local server runs, and where."""
    settings = settings or get_settings()
    info = _read(settings)
    up = running(settings)
    data: dict[str, object] = {"running": up is not None}
    if info is not None:
        data.update(asdict(info))
    data["run_host"] = up is not None and run_host(settings) is not None
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
