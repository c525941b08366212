"""Benchmark: one full run on 1 worker vs the same job in shards on 2 workers.

A real Prefect server (temporary home, free port), a process work pool with the deployments
of this checkout's prefect.yaml, a fresh PostgreSQL schema (127.0.0.1:5432, database
``test``), the fake LLM server in its own process with latency L, and 2,000 generated ~1 KB
documents of 8 variables (per_document mode: one call per document). For each scenario new
workers are started, the parent runs ``extractflow run full bench --shards N`` (the parent
itself in the benchmark's CLI process, the shards on the workers), and the workers are
stopped afterwards, so the CPU time of the workers, their flow runs and the parent is that
of the scenario (``RUSAGE_CHILDREN``: every process of the scenario is waited for).

Printed per scenario: documents/s of the job (started → finished), CPU seconds and CPU ms
per document, the peak of calls in flight at the fake server, and the ratio to 1 worker.

Usage::

    .venv/bin/python -m benchmarks.bench_shards            # L=0 and L=200 ms, 2,000 documents
    .venv/bin/python -m benchmarks.bench_shards --docs 400 # a smoke run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from benchmarks.bench_full_run import VARIABLES, document_text

ROOT = Path(__file__).resolve().parent.parent
PREFECT = str(Path(sys.executable).with_name("prefect"))
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def start_prefect(home: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_LOGGING_LEVEL": "WARNING",
           "PREFECT_SERVER_LOGGING_LEVEL": "WARNING", "EXTRACTFLOW_CHECKOUT": str(ROOT),
           "PYTHONPATH": str(ROOT), "PREFECT_WORKER_QUERY_SECONDS": "1"}
    server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port",
                               str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{env['PREFECT_API_URL']}/health", timeout=2):
                break
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("the Prefect server did not start") from None
            time.sleep(0.5)
    for command in (["work-pool", "create", "extractflow", "--type", "process"],
                    ["deploy", "--all"]):
        subprocess.run([PREFECT, "--no-prompt", *command], env=env, cwd=ROOT, check=True,
                       capture_output=True)
    return server, env


def make_schema() -> tuple[str, str]:
    from sqlalchemy import create_engine, text

    from extraction import db

    schema = f"xf_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    url = f"{PG_ADMIN}?options=-csearch_path%3D{schema}"
    db.upgrade_database(url)
    return schema, url


def drop_schema(schema: str) -> None:
    from sqlalchemy import create_engine, text

    from extraction import db

    db.dispose_engines()
    admin = create_engine(PG_ADMIN)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def add_documents(url: str, docs: int) -> None:
    from sqlalchemy import insert

    from extraction import codebook
    from extraction.db import session_scope
    from extraction.models import Document, ParseStatus, utcnow

    with session_scope(url) as s:
        project = codebook.create_project(s, {"name": "bench", "domain_context": "Trials."})
        for spec in VARIABLES:
            codebook.add_variable(s, project, dict(spec))
        project_id = project.id
    rows = []
    for index in range(docs):
        body = document_text(index)
        rows.append({
            "id": uuid.uuid4(), "project_id": project_id, "filename": f"doc{index:05d}.txt",
            "text": body, "content_hash": hashlib.sha256(body.encode()).hexdigest(),
            "page_offsets": [0], "page_count": 1, "parse_status": ParseStatus.OK,
            "mime": "text/plain", "size_bytes": len(body), "doc_metadata": {},
            "created_at": utcnow(), "updated_at": utcnow()})
    with session_scope(url) as s:
        s.execute(insert(Document), rows)


def run_scenario(env: dict[str, str], url: str, workers: int, shards: int
                 ) -> dict[str, Any]:
    from extraction.db import session_scope
    from extraction.models import ProcessingJob

    cpu_before = _cpu_children()
    procs = [subprocess.Popen([PREFECT, "worker", "start", "--pool", "extractflow", "--type",
                               "process", "--name", f"bench-{i}-{uuid.uuid4().hex[:4]}"],
                              env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
             for i in range(workers)]
    try:
        parent = subprocess.run(
            [sys.executable, "-m", "extraction", "run", "full", "bench", "--shards",
             str(shards), "--allow-large", "--json"], env=env, cwd=ROOT, capture_output=True,
            timeout=1800, check=False)
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(60)
    if parent.returncode != 0:
        raise SystemExit(f"the run failed: {parent.stderr.decode()[-3000:]}")
    job = json.loads(parent.stdout[parent.stdout.index(b"{"):])
    with session_scope(url) as s:
        row = s.get(ProcessingJob, uuid.UUID(job["id"]))
        assert row is not None and row.started_at and row.finished_at
        seconds = (row.finished_at - row.started_at).total_seconds()
    return {"status": job["status"], "documents": job["documents_completed"],
            "seconds": seconds, "cpu": _cpu_children() - cpu_before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32, help="C per worker at L>0")
    args = parser.parse_args()

    from testing.fake_llm_server import FakeLLMProcess

    home = Path(tempfile.mkdtemp(prefix="xf-bench-shards-"))
    server, env = start_prefect(home / "prefect")
    schema, url = make_schema()
    print(f"# one full run of {args.docs} documents, {len(VARIABLES)} variables, per_document;"
          f" 1 worker (1 shard) vs 2 workers (2 shards); {os.cpu_count()} CPUs", flush=True)
    print(f"{'scenario':<24} {'docs/s':>8} {'ratio':>6} {'CPU s':>7} {'CPU ms/doc':>10} "
          f"{'peak in flight':>14}", flush=True)
    try:
        add_documents(url, args.docs)
        with FakeLLMProcess(model="fake-model", max_recorded=100) as llm:
            for latency, concurrency in ((0.0, 8), (0.2, args.concurrency)):
                base = None
                for workers in (1, 2):
                    llm.latency = latency
                    llm.reset()
                    env.update({
                        "EXTRACTFLOW_DATABASE_URL": url, "EXTRACTFLOW_LLM_BASE_URL": llm.base_url,
                        "EXTRACTFLOW_LLM_API_KEY": "sk-bench",
                        "EXTRACTFLOW_LLM_MODEL": "fake-model",
                        "EXTRACTFLOW_LLM_CONCURRENCY": str(concurrency),
                        "EXTRACTFLOW_GLOBAL_CONCURRENCY_LIMIT": str(2 * concurrency),
                        "EXTRACTFLOW_GLOBAL_CONCURRENCY_LIMIT_NAME":
                            f"xf-bench-{uuid.uuid4().hex[:6]}",
                        "EXTRACTFLOW_HOME": str(home / "xf"),
                        "EXTRACTFLOW_SHARD_POLL_SECONDS": "0.5"})
                    _forget_jobs(url)  # every scenario a first run: no cell to re-use
                    result = run_scenario(env, url, workers, shards=workers)
                    rate = result["documents"] / result["seconds"]
                    base = base or rate
                    name = f"L={latency * 1000:.0f} ms C={concurrency} {workers} worker" + \
                        ("s" if workers > 1 else "")
                    print(f"{name:<24} {rate:8.1f} {rate / base:6.2f} {result['cpu']:7.1f} "
                          f"{1000 * result['cpu'] / result['documents']:10.2f} "
                          f"{llm.stats()['max_in_flight']:>14}", flush=True)
        print(_LIMITS.format(cpus=os.cpu_count()), flush=True)
    finally:
        drop_schema(schema)
        server.terminate()
        server.wait(30)


_LIMITS = """
What limits the ratio on this machine ({cpus} CPUs): every process of the job shares them —
the Prefect server, PostgreSQL, the fake LLM server, the parent and each worker's shard flow
run. At L=0 a document costs CPU only (building the prompt, validating the answer, grounding,
the batched write), so a second worker on the same cores adds no capacity, only a second
flow run's start-up (imports, Prefect client, engine) and a second set of connections: the
ratio stays near or below 1. At L>0 the calls of one worker wait on the server, so a second
worker with its own C doubles the calls in flight (within the global limit) until the CPU
cost per document fills the cores; the ratio approaches 2 only while
docs/s × CPU per document stays well under the cores. On separate machines each worker
brings its own cores, and the shared parts left are the database and the Prefect server."""


def _forget_jobs(url: str) -> None:
    """Delete earlier jobs (and their cells): else the next run re-uses their cells and
    makes no LLM call."""
    from sqlalchemy import delete

    from extraction.db import session_scope
    from extraction.models import ProcessingJob

    with session_scope(url) as s:
        s.execute(delete(ProcessingJob))


if __name__ == "__main__":
    main()
