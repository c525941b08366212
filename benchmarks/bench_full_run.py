"""Benchmark: ``full_run`` against a plain asyncio + AsyncOpenAI + instructor script.

Both run on the same generated documents against the same fake OpenAI-compatible server
(``testing/fake_llm_server.py``, in its own process so it does not share the client's GIL),
with latency L per call and concurrency C. Each measurement runs in a fresh child process, so
its peak RSS is its own.

* ``plain``: a semaphore of C, one call per document (a pydantic model with one field per
  variable), no database — the reference a hand-written script would be.
* ``ours``: the real thing — SQLite database, the ``full-run`` Prefect flow on the ephemeral
  API, per_document mode, chunks of ``documents_per_chunk``, grounding, batched writes,
  progress artifact, summary. Its run time is the job's (started → finished); the process
  wall time, which adds Prefect's ephemeral server start-up, is printed as well.

Printed per scenario: documents/second and its share of the ideal C/L, LLM calls per
document, time per document, peak RSS, and for ``ours`` the number of Prefect task runs.

Usage::

    .venv/bin/python -m benchmarks.bench_full_run                 # the issue's three settings
    .venv/bin/python -m benchmarks.bench_full_run --quick         # small sizes, a smoke run
    .venv/bin/python -m benchmarks.bench_full_run --only L=1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

VARIABLES: list[dict[str, Any]] = [
    {"name": "sponsor", "type": "TEXT", "instructions": "The sponsoring organisation."},
    {"name": "phase", "type": "CATEGORY", "categories": ["Phase 1", "Phase 2", "Phase 3"],
     "instructions": "The trial phase."},
    {"name": "enrollment", "type": "NUMBER", "unit": "participants",
     "instructions": "Number of participants enrolled."},
    {"name": "start_date", "type": "DATE", "instructions": "When the trial started."},
    {"name": "randomised", "type": "BOOLEAN", "instructions": "Whether it is randomised."},
    {"name": "country", "type": "TEXT", "instructions": "Country where the trial ran."},
    {"name": "drug", "type": "TEXT", "instructions": "Name of the drug studied."},
    {"name": "duration_weeks", "type": "NUMBER", "unit": "weeks",
     "instructions": "Duration of the treatment in weeks."},
]


def document_text(index: int) -> str:
    """A ~1 KB trial report with every variable's value in its own sentence."""
    filler = ("The protocol describes the inclusion criteria, the visits and the assessments "
              "in detail, and the statistical analysis plan was fixed before unblinding. ")
    return (
        f"Report {index}. The trial was sponsored by Sponsor{index} Labs.\n"
        f"It is a Phase {index % 3 + 1} study.\n"
        f"In total {100 + index % 900} participants were enrolled.\n"
        f"The trial started on 2024-{index % 12 + 1:02d}-15.\n"
        "Participants were randomised: yes.\n"
        f"It ran in Country{index % 40}.\n"
        f"The drug studied was Drug{index % 97}.\n"
        f"Treatment lasted {4 + index % 48} weeks.\n" + filler * 4
    )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- the plain reference


async def _plain(base_url: str, docs: int, concurrency: int) -> dict[str, Any]:
    import instructor
    from openai import AsyncOpenAI
    from pydantic import BaseModel, Field, create_model

    class Text(BaseModel):
        value: str | None = None
        evidence: str | None = None
        confidence: float = Field(ge=0, le=1)

    class Number(BaseModel):
        value: float | None = None
        evidence: str | None = None
        confidence: float = Field(ge=0, le=1)

    class Flag(BaseModel):
        value: bool | None = None
        evidence: str | None = None
        confidence: float = Field(ge=0, le=1)

    kinds = {"TEXT": Text, "CATEGORY": Text, "DATE": Text, "NUMBER": Number, "BOOLEAN": Flag}
    Answer = create_model(  # type: ignore[call-overload]
        "Answer", **{v["name"]: (kinds[v["type"]], ...) for v in VARIABLES})
    client = instructor.from_openai(
        AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0, timeout=60),
        mode=instructor.Mode.TOOLS,
    )
    blocks = "\n".join(f"- {v['name']} ({v['type']}): {v['instructions']}" for v in VARIABLES)
    semaphore = asyncio.Semaphore(concurrency)
    ok = 0

    async def one(index: int) -> None:
        nonlocal ok
        async with semaphore:
            await client.chat.completions.create(
                model="fake-model", response_model=Answer, max_retries=0,
                messages=[
                    {"role": "system", "content": "Extract the variables from the document. "
                     "Answer only from the document; null when not stated."},
                    {"role": "user", "content": f"{blocks}\n<document>\n{document_text(index)}"
                     "\n</document>"},
                ],
            )
            ok += 1

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(docs)))
    elapsed = time.perf_counter() - start
    return {"documents": docs, "ok": ok, "seconds": elapsed, "wall_seconds": elapsed}


# ---------------------------------------------------------------- ours: the full_run flow


def _ours(base_url: str, docs: int, concurrency: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="xf-bench-"))
    os.environ.update({
        "EXTRACTFLOW_HOME": str(home),
        "EXTRACTFLOW_LLM_BASE_URL": base_url,
        "EXTRACTFLOW_LLM_API_KEY": "sk-bench",
        "EXTRACTFLOW_LLM_MODEL": "fake-model",
        "EXTRACTFLOW_LLM_CONCURRENCY": str(concurrency),
        "EXTRACTFLOW_GLOBAL_CONCURRENCY_LIMIT": str(max(concurrency, 32)),
        "EXTRACTFLOW_GLOBAL_CONCURRENCY_LIMIT_NAME": f"xf-bench-{os.getpid()}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    })
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    import hashlib
    import uuid

    from sqlalchemy import insert

    from extraction import codebook
    from extraction.db import session_scope
    from extraction.models import Document, ParseStatus, ProcessingJob, utcnow

    with session_scope() as s:
        project = codebook.create_project(s, {"name": "bench", "domain_context": "Trials."})
        for spec in VARIABLES:
            codebook.add_variable(s, project, dict(spec))
        project_id = project.id
    for start in range(0, docs, 2000):
        rows = []
        for index in range(start, min(docs, start + 2000)):
            text = document_text(index)
            rows.append({
                "id": uuid.uuid4(), "project_id": project_id, "filename": f"doc{index:05d}.txt",
                "text": text, "content_hash": hashlib.sha256(text.encode()).hexdigest(),
                "page_offsets": [0], "page_count": 1, "parse_status": ParseStatus.OK,
                "mime": "text/plain", "size_bytes": len(text), "doc_metadata": {},
                "created_at": utcnow(), "updated_at": utcnow(),
            })
        with session_scope() as s:
            s.execute(insert(Document), rows)

    from flows.full_run import full_run

    begin = time.perf_counter()
    state = asyncio.run(full_run(project="bench", return_state=True))
    wall = time.perf_counter() - begin
    with session_scope() as s:
        job = s.query(ProcessingJob).order_by(ProcessingJob.created_at.desc()).first()
        assert job is not None
        run_seconds = (job.finished_at - job.started_at).total_seconds()
        result = {
            "documents": docs, "ok": job.documents_completed, "failed": job.documents_failed,
            "status": job.status.value, "state": state.type.value, "seconds": run_seconds,
            "wall_seconds": wall, "llm_calls_recorded": job.llm_calls,
        }
    from config.settings import get_settings

    chunk = get_settings().documents_per_chunk
    result["task_runs"] = 3 + -(-docs // chunk)  # parse + prompt + aggregate + one per chunk
    return result


# ---------------------------------------------------------------- driver


def child(args: argparse.Namespace) -> None:
    if args.child == "plain":
        result = asyncio.run(_plain(args.base_url, args.docs, args.concurrency))
    else:
        result = _ours(args.base_url, args.docs, args.concurrency)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print("RESULT " + json.dumps(result), flush=True)


def measure(kind: str, server: Any, latency: float, docs: int, concurrency: int
            ) -> dict[str, Any]:
    server.latency = latency
    server.reset()
    command = [sys.executable, "-m", "benchmarks.bench_full_run", "--child", kind,
               "--base-url", server.base_url, "--docs", str(docs),
               "--concurrency", str(concurrency)]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    if completed.returncode != 0 or not lines:
        raise SystemExit(f"{kind} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    stats = server.stats()
    result["llm_calls"] = stats["path_counts"].get("/v1/chat/completions", 0)
    result["max_in_flight"] = stats["max_in_flight"]
    return result


def report(kind: str, latency: float, concurrency: int, r: dict[str, Any]) -> str:
    docs_per_s = r["documents"] / r["seconds"]
    ideal = concurrency / latency if latency > 0 else None
    share = f"{docs_per_s / ideal:6.1%} of ideal {ideal:.0f}/s" if ideal else "ideal ∞"
    extra = f" | task runs {r['task_runs']} | wall {r['wall_seconds']:.1f} s" \
        if "task_runs" in r else ""
    return (
        f"{kind:<5} L={latency:<4} C={concurrency} N={r['documents']:<6} "
        f"{docs_per_s:8.1f} docs/s ({share}) | {r['llm_calls'] / r['documents']:.2f} calls/doc"
        f" | {1000 * r['seconds'] / r['documents']:6.2f} ms/doc | max in flight "
        f"{r['max_in_flight']} | peak RSS {r['peak_rss_mb']:.0f} MB{extra}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=["plain", "ours"])
    parser.add_argument("--base-url")
    parser.add_argument("--docs", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--only", action="append", default=[],
                        help="run only scenarios named like L=1, L=0.2, L=0, memory")
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from testing.fake_llm_server import FakeLLMProcess

    c = args.concurrency
    scenarios = [  # (name, latency, documents)
        ("L=1", 1.0, 100 if args.quick else 640),
        ("L=0.2", 0.2, 200 if args.quick else 1600),
        ("L=0", 0.0, 500 if args.quick else 10_000),
    ]
    if not args.quick:
        scenarios.append(("memory", 0.0, 2_000))
    if args.only:
        scenarios = [s for s in scenarios if s[0] in args.only]
    print(f"# full_run vs plain asyncio+AsyncOpenAI+instructor, C={c}, {len(VARIABLES)} "
          f"variables, per_document mode, {os.cpu_count()} CPUs", flush=True)
    with FakeLLMProcess(model="fake-model", max_recorded=100) as server:
        for name, latency, docs in scenarios:
            kinds = ["ours"] if name == "memory" else ["plain", "ours"]
            for kind in kinds:
                result = measure(kind, server, latency, docs, c)
                print(report(kind, latency, c, result), flush=True)


if __name__ == "__main__":
    main()
