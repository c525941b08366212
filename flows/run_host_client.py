"""What the CLI needs to hand a job to the run host (:mod:`flows.run_host`) and follow it.

Standard library only, and no Prefect import: handing a job over must cost the CLI
milliseconds, or the host would save nothing. :func:`hand_over` returns None whenever the
host cannot take the job (none running, another home, settings or code changed since it
started, stopping); the CLI then runs the job itself, as without a server.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from config.settings import Settings, get_settings

__all__ = ["TOKEN_HEADER", "HostAddress", "HostedJob", "fingerprint", "hand_over"]

TOKEN_HEADER = "X-Extractflow-Token"

_CODE_DIRS = ("config", "extraction", "flows", "tasks")
_ROOT = Path(__file__).resolve().parent.parent


def _code_stamp() -> str:
    """The newest modification time of our Python sources: a host started before an edit
    or an upgrade would run the old code."""
    newest = 0.0
    for name in _CODE_DIRS:
        for path in (_ROOT / name).rglob("*.py"):
            newest = max(newest, path.stat().st_mtime)
    return repr(newest)


def fingerprint(settings: Settings | None = None) -> str:
    """A hash of every setting (secrets included, never sent in clear) and of the code."""
    settings = settings or get_settings()
    values = {name: (value.get_secret_value() if isinstance(value, SecretStr) else value)
              for name, value in settings}
    text = json.dumps(values, sort_keys=True, default=str) + _code_stamp()
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class HostAddress:
    """Where the run host listens, as recorded in the local server's state file."""

    port: int
    token: str

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                timeout: float = 2.0) -> tuple[int, dict[str, Any]]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
            headers={TOKEN_HEADER: self.token, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read() or b"{}")
            except ValueError:
                return exc.code, {}


@dataclass(frozen=True)
class HostedJob:
    """A job the run host took; asks the host how its run is going."""

    job_id: str
    address: HostAddress

    def status(self) -> dict[str, Any] | None:
        """The host's view of the run, or None when the host is gone (killed, stopped)."""
        try:
            code, body = self.address.request("GET", f"/runs/{self.job_id}")
        except OSError:
            return None
        return body if code == 200 else None

    def running(self) -> bool:
        found = self.status()
        return bool(found and found.get("running"))


def hand_over(address: HostAddress | None, *, job_id: str, kind: str, project: str,
              force: bool, settings: Settings | None = None
              ) -> tuple[HostedJob | None, str | None]:
    """Ask the host to run the job: the job when it took it, else why not (None when there
    is no host at all, which needs no explanation)."""
    if address is None:
        return None, None
    body = {"job_id": job_id, "kind": kind, "project": project, "force": force,
            "fingerprint": fingerprint(settings)}
    try:
        code, answer = address.request("POST", "/runs", body)
    except OSError:
        return None, None  # no host listening: a stale state file
    if code == 202:
        return HostedJob(job_id=job_id, address=address), None
    return None, str(answer.get("error") or f"HTTP {code}")
