"""Benchmark: a full run synchronously and through the Batch API, on the demo codebook.

The demo codebook (``examples/clinical_trials.codebook.yaml``) over N generated reports
(the demo corpus's wording, numbered so each is distinct), against the fake
OpenAI-compatible server in its own process. Each mode runs on a fresh SQLite database:

* ``sync``: the runner and extractor of a full run (no Prefect), ``llm_concurrency`` calls
  in flight, each call with the server's latency;
* ``batch``: :func:`extraction.run.batch.advance` until the job is done — record, JSONL,
  upload, create batches (split at ``--max-requests``), poll, download, validate, store.
  The fake provider answers a batch as fast as it can (no 24 h window); the time it spent
  answering lines is printed apart (``provider s``).

Printed per mode: LLM calls (lines for batch), synchronous chat requests, measured input /
output / cached tokens (the job's counters, from the server's ``usage``), batches and files,
wall time. Cost per 1,000 documents is priced from these tokens elsewhere (the price table).

Usage::

    .venv/bin/python -m benchmarks.bench_batch                 # 1,000 documents
    .venv/bin/python -m benchmarks.bench_batch --docs 200 --max-requests 50
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CODEBOOK = ROOT / "examples" / "clinical_trials.codebook.yaml"


def _document_text(index: int) -> str:
    from examples.clinical_trials_corpus import RECORDS, _paragraphs

    record = RECORDS[index % len(RECORDS)]
    return f"Report {index}.\n\n" + "\n\n".join(_paragraphs(record, index))


def _setup(url: str, docs: int) -> str:
    from extraction import db
    from extraction.codebook.file import apply_codebook, load_codebook
    from extraction.models import Document, ParseStatus, Project

    db.upgrade_database(url)
    with db.session_scope(url) as session:
        apply_codebook(session, load_codebook(CODEBOOK))
        project = session.query(Project).filter_by(name="clinical-trials").one()
        for index in range(docs):
            text = _document_text(index)
            session.add(Document(
                project_id=project.id, filename=f"report{index:05d}.txt", text=text,
                content_hash=hashlib.sha256(text.encode()).hexdigest(), page_offsets=[0],
                page_count=1, parse_status=ParseStatus.OK, mime="text/plain",
                size_bytes=len(text.encode())))
        return project.name


def _open_job(project: str, *, batch: bool) -> str:
    from config.settings import get_settings
    from extraction.db import session_scope
    from extraction.run.plan import create_run_job, open_job, snapshot_prompts

    with session_scope() as session:
        job = create_run_job(session, get_settings(), kind="FULL", project=project, batch=batch)
        open_job(session, job.id, stale_after=60)
        snapshot_prompts(session, job)
        return str(job.id)


def _sync(job_id: str) -> None:
    import asyncio

    from config.settings import get_settings
    from extraction.db import session_scope
    from extraction.llm.client import LLMClient
    from extraction.run import jobs
    from extraction.run.extractor import Extractor
    from extraction.run.plan import chunked, load_plan, pending_documents
    from extraction.run.runner import ChunkRunner

    settings = get_settings()
    with session_scope() as session:
        plan = load_plan(session, jobs.get_job(session, job_id))
        todo = pending_documents(session, plan)

    async def run() -> None:
        semaphore = asyncio.Semaphore(settings.llm_concurrency)
        client = LLMClient.from_settings(settings, model=plan.model, limiter=lambda: semaphore)
        runner = ChunkRunner(plan, Extractor(client, mode=plan.mode, settings=settings),
                             session_factory=session_scope,
                             documents_in_flight=settings.llm_concurrency + 2,
                             check_written=False)
        for chunk in chunked(todo, settings.documents_per_chunk):
            await runner.run_chunk(chunk)
        await client.aclose()

    asyncio.run(run())


def _batch(job_id: str) -> None:
    from extraction.run.batch import advance

    while not advance(job_id).done:
        time.sleep(0.2)


def _measure(mode: str, docs: int, server: Any) -> dict[str, Any]:
    from sqlalchemy import select

    from extraction import db
    from extraction.db import session_scope
    from extraction.models import LLMBatch, ProcessingJob
    from extraction.run.summary import finalize_job

    home = Path(tempfile.mkdtemp(prefix=f"xf-bench-batch-{mode}-"))
    os.environ["EXTRACTFLOW_HOME"] = str(home)
    url = f"sqlite:///{home / 'bench.db'}"
    os.environ["EXTRACTFLOW_DATABASE_URL"] = url
    project = _setup(url, docs)
    job_id = _open_job(project, batch=mode == "batch")
    server.reset()
    started = time.perf_counter()
    (_batch if mode == "batch" else _sync)(job_id)
    wall = time.perf_counter() - started
    with session_scope() as session:
        job = session.get(ProcessingJob, uuid.UUID(job_id))
        assert job is not None
        rows = list(session.scalars(select(LLMBatch).where(LLMBatch.job_id == job.id)))
        figures = {
            "mode": mode, "documents": job.documents_completed, "failed": job.documents_failed,
            "calls": job.llm_calls, "tokens_in": job.tokens_in, "tokens_out": job.tokens_out,
            "tokens_cached": job.tokens_cached, "batches": len(rows),
            "files": sum(1 for r in rows if r.input_file_id),
            "lines": sum(r.lines_total for r in rows), "wall_s": wall,
        }
        finalize_job(session, job.id, "complete")
    stats = server.stats()
    figures["sync_requests"] = stats["path_counts"].get("/v1/chat/completions", 0)
    figures["provider_s"] = stats.get("batches", {}).get("busy_ms", 0) / 1000
    db.dispose_engines()
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.2,
                        help="seconds per synchronous call at the fake server")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-requests", type=int, default=50_000,
                        help="requests per batch (EXTRACTFLOW_BATCH_MAX_REQUESTS)")
    args = parser.parse_args(argv)

    from testing.fake_llm_server import FakeLLMProcess

    rows = []
    with FakeLLMProcess(model=None, latency=args.latency) as server:
        for key, value in {"LLM_BASE_URL": server.base_url, "LLM_API_KEY": "sk-bench",
                           "LLM_MODEL": "fake-model", "LLM_CONCURRENCY": args.concurrency,
                           "BATCH_MAX_REQUESTS": args.max_requests,
                           "DOCUMENTS_PER_CHUNK": 100, "RUN_CONFIRM_CALLS": 10**9}.items():
            os.environ[f"EXTRACTFLOW_{key}"] = str(value)
        for mode in ("sync", "batch"):
            rows.append(_measure(mode, args.docs, server))
    print(f"\nbatch benchmark: demo codebook ({CODEBOOK.name}), {args.docs} generated "
          f"documents, per_document mode, fake server latency {args.latency:g} s per "
          f"synchronous call, concurrency {args.concurrency}, "
          f"{args.max_requests:,} requests per batch\n")
    header = (f"{'mode':<6} {'docs':>6} {'failed':>6} {'calls':>6} {'sync req':>8} "
              f"{'tokens in':>10} {'tokens out':>10} {'cached':>9} {'batches':>7} "
              f"{'files':>5} {'lines':>6} {'wall s':>7} {'provider s':>10}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['mode']:<6} {r['documents']:>6} {r['failed']:>6} {r['calls']:>6} "
              f"{r['sync_requests']:>8} {r['tokens_in']:>10,} {r['tokens_out']:>10,} "
              f"{r['tokens_cached']:>9,} {r['batches']:>7} {r['files']:>5} {r['lines']:>6} "
              f"{r['wall_s']:>7.1f} {r['provider_s']:>10.1f}")
    print("\nprovider s: the fake provider's own time answering batch lines, part of the batch "
          "wall time here; a real provider takes up to 24 h instead. wall s - provider s is "
          "extractflow's side (record, upload, poll, download, validate, store).")


if __name__ == "__main__":
    main()
