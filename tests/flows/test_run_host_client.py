"""Handing a job to the run host: when the CLI may, and what the host refuses.

The host's HTTP side runs for real here (its handler on a free port, the CLI's client over
HTTP); the runs themselves are in ``test_run_host.py``, against real processes.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest

from config.settings import Settings
from flows import local_server
from flows.run_host import RunHost, _handler
from flows.run_host_client import HostAddress, fingerprint, hand_over


def test_the_fingerprint_changes_with_any_setting_secrets_included() -> None:
    base = Settings(llm_api_key="sk-one")
    assert fingerprint(base) == fingerprint(Settings(llm_api_key="sk-one"))
    assert fingerprint(base) != fingerprint(Settings(llm_api_key="sk-two"))
    assert fingerprint(base) != fingerprint(Settings(llm_api_key="sk-one", llm_concurrency=3))
    assert "sk-one" not in fingerprint(base)


@pytest.fixture
def host() -> Iterator[tuple[RunHost, HostAddress]]:
    runs = RunHost()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(runs, "the-token"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield runs, HostAddress(port=server.server_address[1], token="the-token")
    finally:
        server.shutdown()
        server.server_close()


def _job() -> dict[str, object]:
    return {"job_id": str(uuid.uuid4()), "kind": "SAMPLE", "project": "trials", "force": False}


def test_the_host_refuses_a_command_with_other_settings(
        host: tuple[RunHost, HostAddress]) -> None:
    runs, address = host
    hosted, why = hand_over(address, settings=Settings(llm_concurrency=7), **_job())  # type: ignore[arg-type]
    assert hosted is None and why and "other settings or code" in why
    assert runs.running() == []


def test_the_host_refuses_requests_without_its_token_or_while_stopping(
        host: tuple[RunHost, HostAddress]) -> None:
    runs, address = host
    intruder = HostAddress(port=address.port, token="guess")
    assert intruder.request("GET", "/health")[0] == 403
    assert hand_over(intruder, **_job())[1] == "wrong or missing token"  # type: ignore[arg-type]
    assert address.request("POST", "/runs", {"job_id": "not-a-uuid"})[0] == 400
    assert address.request("GET", f"/runs/{uuid.uuid4()}")[0] == 404
    runs.stopping.set()
    assert hand_over(address, **_job())[1] == "the run host is stopping"  # type: ignore[arg-type]
    code, health = address.request("GET", "/health")
    assert code == 200 and health["fingerprint"] == fingerprint()


def test_no_host_means_the_cli_runs_the_job_itself_without_a_word() -> None:
    assert hand_over(None, **_job()) == (None, None)  # type: ignore[arg-type]
    gone = HostAddress(port=local_server._free_port(), token="t")  # nothing listens there
    assert hand_over(gone, **_job()) == (None, None)  # type: ignore[arg-type]


def test_no_run_host_without_a_server_or_when_prefect_points_elsewhere(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert local_server.run_host() is None  # no state file in this home
    monkeypatch.setattr(local_server, "running", lambda settings=None: local_server.ServerInfo(
        pid=1, port=1, api_url="http://127.0.0.1:1/api", ui_url="", home="", log="",
        host_pid=1, host_port=2))
    monkeypatch.setattr(local_server, "_alive", lambda pid: True)
    folder = Settings().home / "prefect-server"
    folder.mkdir(parents=True)
    (folder / "run-host.token").write_text("t0ken\n")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert local_server.run_host() == HostAddress(port=2, token="t0ken")
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")  # the same server
    assert local_server.run_host() == HostAddress(port=2, token="t0ken")
    monkeypatch.setenv("PREFECT_API_URL", "http://elsewhere:4200/api")
    assert local_server.run_host() is None
