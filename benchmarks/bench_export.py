"""Benchmark exports: 10,000 documents × 10 variables, every format, seconds and peak RSS.

Usage::

    .venv/bin/python -m benchmarks.bench_export                 # SQLite in a temp folder
    .venv/bin/python -m benchmarks.bench_export --postgres      # also PostgreSQL (127.0.0.1)
    .venv/bin/python -m benchmarks.bench_export --documents 2000 --formats csv-wide xlsx

The database is filled with Core ``insert()`` executemany (not ORM objects), each document
carrying ``--text-kb`` KB of text so that the corpus is large (50 MB by default). Each export
then runs in a fresh Python process, so its peak RSS (``ru_maxrss``) is its own; the table
shows the RSS after imports (the baseline), the peak during the export, and the difference.
The difference must not grow with the corpus (compare ``--text-kb 1`` with ``--text-kb 20``).
A last run writes every document's text too (``include_document_text``): texts are streamed a
batch at a time, so even then memory stays flat while the file holds the whole corpus. Targets: CSV wide ≤ 3 s, XLSX ≤ 20 s (wall clock; CPU
seconds are shown too, as wall time on a shared machine depends on its load).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

FORMATS = ["csv-wide", "csv-long", "xlsx", "json", "parquet"]
TARGETS = {"csv-wide": 3.0, "xlsx": 20.0}
PG_URL = os.environ.get("EXTRACTFLOW_TEST_PG_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")
VARIABLE_SPECS: list[dict[str, Any]] = [
    {"name": "sponsor", "type": "TEXT"},
    {"name": "phase", "type": "CATEGORY", "categories": ["Phase 1", "Phase 2", "Phase 3"]},
    {"name": "enrollment", "type": "NUMBER"},
    {"name": "start_date", "type": "DATE"},
    {"name": "randomised", "type": "BOOLEAN"},
    {"name": "country", "type": "TEXT"},
    {"name": "sites", "type": "CATEGORY", "categories": ["EU", "US", "Asia"],
     "multi_select": True},
    {"name": "dose_mg", "type": "NUMBER"},
    {"name": "end_date", "type": "DATE"},
    {"name": "blinded", "type": "BOOLEAN"},
]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _value(spec: dict[str, Any], rng: random.Random) -> Any:
    kind = spec["type"]
    if kind == "TEXT":
        return rng.choice(["Acme Pharma", "Beta Bio", "=HYPERLINK(x)", "Gamma Labs", "Delta"])
    if kind == "CATEGORY":
        cats = spec["categories"]
        return rng.sample(cats, rng.randint(1, 2)) if spec.get("multi_select") \
            else rng.choice(cats)
    if kind == "NUMBER":
        return rng.choice([rng.randint(5, 5000), round(rng.uniform(0.5, 300), 2)])
    if kind == "DATE":
        return (date(2010, 1, 1) + timedelta(days=rng.randint(0, 5000))).isoformat()
    return rng.random() < 0.5


def fill(url: str, n_docs: int, n_vars: int, text_kb: int, batch: int = 1000) -> dict[str, Any]:
    """Create one project with ``n_vars`` variables, ``n_docs`` documents and one full job."""
    from sqlalchemy import insert, select

    from extraction import codebook, db
    from extraction.models import (
        Document,
        Extraction,
        ExtractionStatus,
        JobKind,
        JobStatus,
        ParseStatus,
        ProcessingJob,
        Prompt,
        PromptOrigin,
        utcnow,
    )

    rng = random.Random(42)
    db.upgrade_database(url)
    started = time.perf_counter()
    specs = [dict(VARIABLE_SPECS[i % len(VARIABLE_SPECS)]) for i in range(n_vars)]
    for i, spec in enumerate(specs):
        if i >= len(VARIABLE_SPECS):
            spec["name"] = f"{spec['name']}_{i}"
    with db.session_scope(url) as s:
        project = codebook.create_project(s, {"name": "bench"})
        variables = [codebook.add_variable(s, project, spec) for spec in specs]
        prompts = []
        for v in variables:  # the codebook may already have made prompt v1
            prompt = s.scalar(select(Prompt).where(Prompt.variable_id == v.id,
                                                   Prompt.is_current.is_(True)))
            if prompt is None:
                prompt = Prompt(variable_id=v.id, version=1, system_template="s",
                                user_template="u", origin=PromptOrigin.GENERATED,
                                is_current=True)
                s.add(prompt)
            prompts.append(prompt)
        now = utcnow()
        job = ProcessingJob(project_id=project.id, kind=JobKind.FULL, status=JobStatus.COMPLETE,
                            documents_total=n_docs, documents_completed=n_docs, progress=1.0,
                            model="bench-model", started_at=now, finished_at=now,
                            tokens_in=n_docs * 900, tokens_out=n_docs * 120)
        s.add(job)
        s.flush()
        ids = {"project": project.id, "job": job.id,
               "variables": [(v.id, spec) for v, spec in zip(variables, specs)],
               "prompts": [p.id for p in prompts]}
    filler = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 40)
    text = (filler * (text_kb * 1024 // len(filler) + 1))[: text_kb * 1024]
    engine = db.get_engine(url)
    doc_table, cell_table = Document.__table__, Extraction.__table__
    with engine.begin() as conn:
        for start in range(0, n_docs, batch):
            docs, cells = [], []
            for i in range(start, min(start + batch, n_docs)):
                doc_id = uuid.uuid4()
                docs.append({"id": doc_id, "project_id": ids["project"],
                             "filename": f"report_{i:05d}.pdf", "text": f"{i} {text}",
                             "content_hash": f"{i:064d}", "parse_status": ParseStatus.OK,
                             "page_offsets": [0], "page_count": 3, "size_bytes": len(text)})
                for (var_id, spec), prompt_id in zip(ids["variables"], ids["prompts"]):
                    missing = rng.random() < 0.05
                    value = None if missing else _value(spec, rng)
                    cells.append({
                        "id": uuid.uuid4(), "job_id": ids["job"], "document_id": doc_id,
                        "variable_id": var_id, "prompt_id": prompt_id, "model": "bench-model",
                        "value": value, "confidence": None if missing else round(rng.random(), 3),
                        "evidence_quote": None if missing else f"… {value} …",
                        "evidence_page": None if missing else rng.randint(1, 3),
                        "status": (ExtractionStatus.NOT_FOUND if missing
                                   else ExtractionStatus.OK),
                        "tokens_in": 90, "tokens_out": 12,
                    })
            conn.execute(insert(doc_table), docs)
            conn.execute(insert(cell_table), cells)
    return {"seconds": round(time.perf_counter() - started, 1),
            "corpus_mb": round(n_docs * len(text) / 1024 / 1024, 1),
            "extractions": n_docs * n_vars}


def run_one(url: str, fmt: str, out_dir: str, document_text: bool) -> dict[str, Any]:
    """One export in this process: seconds and peak RSS (this runs in a fresh subprocess)."""
    import pandas  # noqa: F401  - pyarrow imports it on first use: an import, not export work
    from sqlalchemy import text

    from extraction import db
    from extraction.export import ExportOptions, export_project

    with db.session_scope(url) as s:  # warm up: engine, schema check
        s.execute(text("SELECT 1"))
    baseline = _rss_mb()
    output = Path(out_dir) / f"bench-{fmt}{'-text' if document_text else ''}"
    started, cpu_started = time.perf_counter(), time.process_time()
    with db.session_scope(url) as s:
        result = export_project(s, "bench", ExportOptions(
            format=fmt, output=output, force=True, include_document_text=document_text))
    seconds = time.perf_counter() - started
    return {"format": fmt, "document_text": document_text, "seconds": round(seconds, 2),
            "cpu_seconds": round(time.process_time() - cpu_started, 2),
            "baseline_mb": round(baseline, 1), "peak_mb": round(_rss_mb(), 1),
            "rows": result.rows, "columns": result.columns,
            "file_mb": round(output.stat().st_size / 1024 / 1024, 1)}


def _subprocess(url: str, fmt: str, out_dir: str, document_text: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--run-one", fmt, "--url", url, "--out", out_dir]
    if document_text:
        cmd.append("--include-document-text")
    # Byte-code caches in a private folder: with PYTHONDONTWRITEBYTECODE set (as in some
    # sandboxes) every run would recompile pandas & co. and time that instead of the export.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(Path(out_dir) / "pycache")
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{fmt} export failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench(label: str, url: str, args: argparse.Namespace, out_dir: str) -> None:
    print(f"\n== {label}: filling {args.documents} documents × {args.variables} variables "
          f"({args.text_kb} KB text each) …", flush=True)
    filled = fill(url, args.documents, args.variables, args.text_kb)
    print(f"   filled in {filled['seconds']} s: {filled['extractions']} extractions, "
          f"document texts {filled['corpus_mb']} MB", flush=True)
    runs = [(fmt, False) for fmt in args.formats]
    if not args.skip_text_run:
        runs.append(("csv-wide", True))
    _subprocess(url, runs[0][0], out_dir, False)  # warm-up: fills the byte-code cache
    print(f"   load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    print(f"   {'format':<24}{'seconds':>8}{'cpu s':>7}{'target':>10}{'baseline MB':>13}"
          f"{'peak MB':>9}"
          f"{'Δ MB':>7}{'rows':>7}{'cols':>6}{'file MB':>9}")
    for fmt, with_text in runs:
        r = _subprocess(url, fmt, out_dir, with_text)
        target = TARGETS.get(fmt) if not with_text else None
        verdict = "" if target is None else ("ok" if r["seconds"] <= target else "SLOW")
        name = fmt + (" +document_text" if with_text else "")
        goal = f"≤{target:g} {verdict}" if target else ""
        print(f"   {name:<24}{r['seconds']:>8.2f}{r['cpu_seconds']:>7.2f}{goal:>10}"
              f"{r['baseline_mb']:>13.1f}{r['peak_mb']:>9.1f}"
              f"{r['peak_mb'] - r['baseline_mb']:>7.1f}{r['rows']:>7}{r['columns']:>6}"
              f"{r['file_mb']:>9.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--variables", type=int, default=10)
    parser.add_argument("--text-kb", type=int, default=5)
    parser.add_argument("--formats", nargs="+", default=FORMATS, choices=FORMATS)
    parser.add_argument("--postgres", action="store_true", help="Also run on PostgreSQL.")
    parser.add_argument("--skip-text-run", action="store_true",
                        help="Skip the comparison run with --include-document-text.")
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--include-document-text", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.run_one:
        print(json.dumps(run_one(args.url, args.run_one, args.out, args.include_document_text)))
        return

    work = Path(tempfile.mkdtemp(prefix="xf-bench-export-"))
    os.environ["EXTRACTFLOW_HOME"] = str(work / "home")
    try:
        bench("SQLite", f"sqlite:///{work / 'bench.db'}", args, str(work))
        if args.postgres:
            _bench_postgres(args, str(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _bench_postgres(args: argparse.Namespace, out_dir: str) -> None:
    from sqlalchemy import create_engine, text

    from extraction import db

    schema = f"xf_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        bench("PostgreSQL", f"{PG_URL}?options=-csearch_path%3D{schema}", args, out_dir)
    finally:
        db.dispose_engines()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
