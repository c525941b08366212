"""No work at import; the bootstrap happens when a flow is called, before Prefect starts.

Each check runs in a fresh Python process (what a notebook or a script is), with Prefect's
temporary API server replaced by a probe that records the start-up timeout Prefect would
wait and stops the run there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import asyncio, json, os, sys, threading
import flows, flows.{module}
from flows.{module} import {flow}
at_import = {{
    "env": os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"),
    "threads": sorted(t.name for t in threading.enumerate()),
}}
import prefect.server.api.server as server
from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as TIMEOUT
seen = []
def start(self, timeout=None):
    seen.append(timeout or TIMEOUT.value())
    raise RuntimeError("probe: no server")
server.SubprocessASGIServer.start = start
try:
    asyncio.run({flow}{options}({arguments}))
except RuntimeError:
    pass
print(json.dumps({{"at_import": at_import, "startup_timeout": seen,
                  "llm_stack": "extraction.llm.client" in sys.modules}}))
"""


def _probe(tmp_path: Path, module: str, flow: str, arguments: str, *, options: str = "",
           env: dict[str, str] | None = None) -> dict[str, object]:
    import json

    environment = {key: value for key, value in os.environ.items()
                   if key not in ("PREFECT_API_URL",
                                  "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS")}
    environment.update(PYTHONPATH=str(ROOT), PREFECT_HOME=str(tmp_path / "prefect"),
                       EXTRACTFLOW_HOME=str(tmp_path / "home"), **(env or {}))
    program = _PROBE.format(module=module, flow=flow, arguments=arguments, options=options)
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=180, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_run_flow_called_from_python_gets_the_longer_startup_and_the_llm_stack(
        tmp_path: Path) -> None:
    seen = _probe(tmp_path, "full_run", "full_run", "project='trials'")
    assert seen["at_import"] == {"env": None, "threads": ["MainThread"]}  # nothing on import
    assert seen["startup_timeout"] == [90]  # set before Prefect's server would start
    assert seen["llm_stack"] is True  # imported in the background while Prefect set up


def test_a_value_the_user_set_wins_and_with_options_keeps_the_bootstrap(
        tmp_path: Path) -> None:
    seen = _probe(tmp_path, "sample_run", "sample_run", "project='trials'",
                  options=".with_options(flow_run_name='probe')",
                  env={"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "45"})
    assert seen["startup_timeout"] == [45]
    assert seen["llm_stack"] is True


def test_other_flows_get_the_longer_startup_without_the_llm_stack(tmp_path: Path) -> None:
    seen = _probe(tmp_path, "ingest", "ingest", "project='trials', paths=['.']")
    assert seen["startup_timeout"] == [90]
    assert seen["llm_stack"] is False
