"""Benchmark: the fixed cost of ``extractflow run sample PROJECT --n 3``, ephemeral vs server.

Each measurement is a fresh ``python -m extraction run sample bench --n 3`` process (what a
user types), on an SQLite database in a temporary EXTRACTFLOW_HOME, against the fake
OpenAI-compatible server answering at once — so the wall time is all fixed cost: the CLI's
imports, the database, Prefect, the flow's tasks and artifacts.

* ``ephemeral``: no server; Prefect starts its temporary API server inside the command.
* ``server, run in the command``: a Prefect server runs (``server start`` without its run
  host); the command finds it by itself, and imports and runs the flow itself.
* ``server + run host``: ``extractflow server start`` (its start is not counted): the
  command creates the job and hands it to the warm run host (``flows/run_host.py``), then
  follows it. Its first run after the start is shown apart.
* ``cli floor``: ``extractflow project list`` — the CLI's start-up and a database read, for
  scale.

Wall time and CPU time (user + system of the command and the processes it waited for: the
ephemeral server is one of them, the running server is not) are printed; on a loaded
machine the wall time is mostly waiting for a core.

The target (issue 16) is at most 3 s of fixed cost with the server running.

Usage::

    .venv/bin/python -m benchmarks.bench_ui_overhead             # 3 runs of each
    .venv/bin/python -m benchmarks.bench_ui_overhead --repeat 1
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _setup(home: Path, base_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "EXTRACTFLOW_"))}
    env.update({
        "EXTRACTFLOW_HOME": str(home),
        "EXTRACTFLOW_LLM_BASE_URL": base_url,
        "EXTRACTFLOW_LLM_API_KEY": "sk-bench",
        "EXTRACTFLOW_LLM_MODEL": "fake-model",
        "PYTHONPATH": str(ROOT),
    })
    os.environ.update({k: v for k, v in env.items() if k.startswith("EXTRACTFLOW_")})
    from extraction import db
    from testing.run_factory import add_trial_documents, make_project

    with db.session_scope() as s:
        project = make_project(s, name="bench")
        add_trial_documents(s, project, 10)
    return env


def _time(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, with the processes it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    begin = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "extraction", *command], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - begin
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n"
                         f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from testing.fake_llm_server import FakeLLMServer

    rows: list[tuple[str, list[tuple[float, float]]]] = []
    with tempfile.TemporaryDirectory(prefix="xf-bench-ui-") as tmp, \
            FakeLLMServer(model="fake-model") as llm:
        home = Path(tmp)
        env = _setup(home, llm.base_url)
        sample = ["run", "sample", "bench", "--n", "3"]
        rows.append(("cli floor (project list)",
                     [_time(["project", "list"], env) for _ in range(args.repeat)]))
        rows.append(("run sample --n 3, ephemeral",
                     [_time(sample, env) for _ in range(args.repeat)]))
        from config.settings import Settings
        from flows import local_server

        settings = Settings(home=home)
        local_server.start(settings, port=_free_port(), run_host=False)
        try:
            rows.append(("server, run in the command",
                         [_time(sample, env) for _ in range(args.repeat)]))
        finally:
            local_server.stop(settings)
        begin = time.perf_counter()
        info, _ = local_server.start(settings, port=_free_port())
        started = time.perf_counter() - begin
        if not info.host_pid:
            raise SystemExit(f"the run host did not start: see {info.host_log}")
        try:
            rows.append(("server + run host, 1st run", [_time(sample, env)]))
            rows.append(("server + run host",
                         [_time(sample, env) for _ in range(args.repeat)]))
        finally:
            local_server.stop(settings)
        llm_calls = llm.total_requests
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          "(wall times grow with it; CPU seconds much less)")
    print(f"{'scenario':34} {'runs':>4} {'median s':>9} {'min s':>7} {'max s':>7} "
          f"{'CPU s':>6}")
    for name, measured in rows:
        walls = [wall for wall, _ in measured]
        cpu = statistics.median(c for _, c in measured)
        print(f"{name:34} {len(walls):>4} {statistics.median(walls):>9.2f} "
              f"{min(walls):>7.2f} {max(walls):>7.2f} {cpu:>6.2f}")
    print(f"(server + run host start, not counted: {started:.1f} s; LLM calls {llm_calls}, each "
          "answered at once, so the run times are fixed cost; target with the server: <= 3 s; "
          "CPU s of the run host rows leave out the host's own work)")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
