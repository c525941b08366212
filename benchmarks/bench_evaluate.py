"""Benchmark evaluation: 10,000 documents × 8 variables against a wide gold CSV, seconds and RSS.

Usage::

    .venv/bin/python -m benchmarks.bench_evaluate                   # 2,000 and 10,000 documents
    .venv/bin/python -m benchmarks.bench_evaluate --documents 10000 --postgres

The database is filled as ``bench_export`` fills it (Core inserts; 8 variables of every type,
including a multi-select category), then a gold CSV is written from the stored values with a
seeded share changed (wrong values), blanked (omissions) and invented (hallucinations). Each
evaluation runs in a fresh Python process, so its peak RSS (``ru_maxrss``) is its own: the
table shows the RSS after imports (the baseline), the peak during the evaluation, and the
difference, which must not grow faster than the number of cells. The timed work is the whole
``evaluate_project`` call (gold parsing, the read of the extractions, matching, metrics,
κ/α, 1,000 bootstrap resamples per statistic, calibration) plus writing the Markdown report
with its reliability diagram. Target: ≤ 10 s at 10,000 documents × 8 variables.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from benchmarks.bench_export import PG_URL, _rss_mb, fill

TARGET_SECONDS = 10.0
VARIABLES = 8


def _perturb(vtype: str, value: Any, rng: random.Random) -> Any:
    """A different value of the same type (a wrong answer for the extraction)."""
    if vtype == "NUMBER":
        return (value or 0) + rng.randint(1, 50)
    if vtype == "BOOLEAN":
        return not value
    if vtype == "DATE":
        return (date(2000, 1, 1) + timedelta(days=rng.randint(0, 3000))).isoformat()
    if vtype == "CATEGORY":
        return "Phase 1" if value != "Phase 1" else "Phase 2"
    return f"another sponsor {rng.randint(1, 99)}"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "; ".join(value)
    return str(value)


def write_gold(url: str, path: Path, seed: int = 5) -> dict[str, int]:
    """A wide gold CSV from the stored values: 85 % kept, 10 % changed, 5 % blanked."""
    from sqlalchemy import select

    from extraction import db
    from extraction.models import Document, Extraction, Variable

    rng = random.Random(seed)
    with db.session_scope(url) as s:
        variables = list(s.execute(select(Variable.name, Variable.type, Variable.categories)
                                   .order_by(Variable.position)))
        rows: dict[str, dict[str, Any]] = {}
        query = (select(Document.filename, Variable.name, Variable.type, Extraction.value)
                 .join(Document, Document.id == Extraction.document_id)
                 .join(Variable, Variable.id == Extraction.variable_id))
        changed = 0
        for filename, name, vtype, value in s.execute(query.execution_options(yield_per=5000)):
            roll = rng.random()
            if roll < 0.05:
                value = None
            elif roll < 0.15:
                value = ["EU"] if isinstance(value, list) and value != ["EU"] else (
                    ["US"] if isinstance(value, list) else _perturb(vtype.value, value, rng))
                changed += 1
            rows.setdefault(filename, {})[name] = value
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", *(name for name, _, _ in variables)])
        for filename, values in rows.items():
            writer.writerow([filename, *(_cell(values.get(name)) for name, _, _ in variables)])
    return {"documents": len(rows), "changed": changed}


def run_one(url: str, gold: str, out_dir: str) -> dict[str, Any]:
    """One evaluation in this process: seconds and peak RSS (this runs in a fresh subprocess)."""
    import duckdb  # noqa: F401 - imports, not evaluation work
    import jinja2  # noqa: F401
    import krippendorff  # noqa: F401
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot
    import scipy.stats  # noqa: F401
    import sklearn.metrics  # noqa: F401
    from sqlalchemy import text

    from extraction import db
    from extraction.evaluate import evaluate_project, write_report

    with db.session_scope(url) as s:  # warm up: engine, schema check
        s.execute(text("SELECT 1"))
    baseline = _rss_mb()
    started, cpu_started = time.perf_counter(), time.process_time()
    with db.session_scope(url) as s:
        evaluation = evaluate_project(s, "bench", gold)
    evaluated = time.perf_counter() - started
    write_report(evaluation, Path(out_dir) / "bench-report.md")
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "evaluate_seconds": round(evaluated, 2),
            "cpu_seconds": round(time.process_time() - cpu_started, 2),
            "baseline_mb": round(baseline, 1), "peak_mb": round(_rss_mb(), 1),
            "cells": evaluation.cells, "problems": len(evaluation.gold.problems),
            "accuracy": evaluation.overall["accuracy"].value}


def _subprocess(url: str, gold: Path, out_dir: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.bench_evaluate", "--run-one", str(gold),
           "--url", url, "--out", out_dir]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(Path(out_dir) / "pycache")
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env,
                          cwd=Path(__file__).resolve().parent.parent)
    if done.returncode != 0:
        raise SystemExit(f"evaluation failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench(label: str, make_url: Any, sizes: list[int], work: Path) -> None:
    print(f"\n== {label}: {VARIABLES} variables, gold = the stored values with 10 % changed "
          "and 5 % blanked", flush=True)
    print(f"   {'documents':>9}{'cells':>8}{'seconds':>9}{'of which report':>16}{'cpu s':>7}"
          f"{'target':>10}{'baseline MB':>13}{'peak MB':>9}{'Δ MB':>7}{'accuracy':>10}")
    for n in sizes:
        url = make_url(n)
        fill(url, n, VARIABLES, 1)
        gold = work / f"gold-{n}.csv"
        write_gold(url, gold)
        r = _subprocess(url, gold, str(work))
        verdict = "ok" if r["seconds"] <= TARGET_SECONDS else "SLOW"
        print(f"   {n:>9}{r['cells']:>8}{r['seconds']:>9.2f}"
              f"{r['seconds'] - r['evaluate_seconds']:>16.2f}{r['cpu_seconds']:>7.2f}"
              f"{f'≤{TARGET_SECONDS:g} {verdict}':>10}{r['baseline_mb']:>13.1f}"
              f"{r['peak_mb']:>9.1f}{r['peak_mb'] - r['baseline_mb']:>7.1f}"
              f"{r['accuracy']:>10.3f}", flush=True)
    print(f"   load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, nargs="+", default=[2000, 10_000])
    parser.add_argument("--postgres", action="store_true", help="Also run on PostgreSQL.")
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        print(json.dumps(run_one(args.url, args.run_one, args.out)))
        return
    work = Path(tempfile.mkdtemp(prefix="xf-bench-evaluate-"))
    os.environ["EXTRACTFLOW_HOME"] = str(work / "home")
    try:
        bench("SQLite", lambda n: f"sqlite:///{work / f'bench-{n}.db'}", args.documents, work)
        if args.postgres:
            _bench_postgres(args.documents, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _bench_postgres(sizes: list[int], work: Path) -> None:
    from sqlalchemy import create_engine, text

    from extraction import db

    admin = create_engine(PG_URL)
    schemas: list[str] = []

    def make_url(n: int) -> str:
        schema = f"xf_bench_{uuid.uuid4().hex[:8]}"
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        schemas.append(schema)
        return f"{PG_URL}?options=-csearch_path%3D{schema}"

    try:
        bench("PostgreSQL", make_url, sizes, work)
    finally:
        db.dispose_engines()
        with admin.begin() as conn:
            for schema in schemas:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
