"""The bundled local model on the demo corpus: accuracy per variable type in both modes.

Starts a bundled model's server once (``make local-model`` first; ``--model NAME``, default
the catalog's default), then for each
extraction mode (per_document, per_variable) builds a fresh project in its own
EXTRACTFLOW_HOME (cells are re-used across runs of one database, so each mode needs its own),
ingests the twenty demo reports, runs the full run through the CLI as a user would, and
scores every cell against the corpus's known answers with the demo's rules. Prints, per
mode: accuracy per variable (with its type) and overall, LLM calls, seconds per document,
failed cells, and the server's resident memory.

Usage::

    .venv/bin/python -m benchmarks.bench_local_model            # both modes (~15 min, 2 cores)
    .venv/bin/python -m benchmarks.bench_local_model --modes per_variable --docs 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from examples.clinical_trials_corpus import truth_by_filename, write_corpus
from extraction.llm import local_model
from scripts.demo import CODEBOOK, PROJECT, _same

MODES = ("per_document", "per_variable")


def _cli(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run([sys.executable, "-m", "extraction", *args, "--json"], env=env,
                          check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout)


def _seconds(job: dict[str, Any]) -> float:
    started = datetime.fromisoformat(job["started_at"])
    finished = datetime.fromisoformat(job["finished_at"])
    return (finished - started).total_seconds()


def run_mode(mode: str, server: local_model.LocalServer, root: Path) -> dict[str, Any]:
    """One full run of the demo corpus in ``mode``; returns the scores and the costs."""
    llm = server.llm_settings()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXTRACTFLOW_")}
    env.update({
        "EXTRACTFLOW_HOME": str(root / mode),
        "EXTRACTFLOW_LLM_BASE_URL": llm["base_url"], "EXTRACTFLOW_LLM_API_KEY": llm["api_key"],
        "EXTRACTFLOW_LLM_MODEL": llm["model"], "EXTRACTFLOW_LLM_INSTRUCTOR_MODE": llm["mode"],
        "EXTRACTFLOW_LLM_CONCURRENCY": "2", "EXTRACTFLOW_LLM_TIMEOUT": "180",
    })
    corpus = root / "corpus"
    _cli(env, "codebook", "apply", str(CODEBOOK))
    _cli(env, "docs", "add", PROJECT, str(corpus), "--no-flow")
    started = time.perf_counter()
    job = _cli(env, "run", "full", PROJECT, "--mode", mode)
    wall = time.perf_counter() - started
    results = _cli(env, "job", "results", job["id"], "--limit", "100000")
    rows = results["items"] if isinstance(results, dict) else results
    truth = truth_by_filename()
    scores: dict[str, list[int]] = {}
    failed = 0
    for row in rows:
        hit = _same(row["variable"], row["value"], truth[row["filename"]][row["variable"]])
        score = scores.setdefault(row["variable"], [0, 0])
        score[0] += hit
        score[1] += 1
        failed += row["status"] == "failed"
    return {"mode": mode, "scores": scores, "job": job, "wall": wall, "failed": failed,
            "rss": server.rss_bytes()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--docs", type=int, default=20, help="Use the first N reports (1-20).")
    parser.add_argument("--model", default=None, help="A bundled model (extractflow llm models).")
    args = parser.parse_args()
    types = {v["name"]: v["type"] for v in yaml.safe_load(CODEBOOK.read_text())["variables"]}
    with tempfile.TemporaryDirectory() as tmp, \
            local_model.start_local_server(model=args.model) as server:
        root = Path(tmp)
        for extra in sorted(write_corpus(root / "corpus"))[args.docs:]:
            extra.unlink()
        runs = [run_mode(mode, server, root) for mode in args.modes]
    print(f"\n{'variable':<16} {'type':<9}" + "".join(f" {r['mode']:>14}" for r in runs))
    for name, kind in types.items():
        cells = []
        for r in runs:
            ok, n = r["scores"].get(name, [0, 0])
            cells.append(f"{ok:>3}/{n:<3} {ok / max(n, 1):>5.0%}")
        print(f"{name:<16} {kind:<9}" + "".join(f" {c:>14}" for c in cells))
    totals = [(sum(s[0] for s in r["scores"].values()), sum(s[1] for s in r["scores"].values()))
              for r in runs]
    print(f"{'all':<16} {'':<9}" + "".join(f" {ok:>3}/{n:<3} {ok / max(n, 1):>5.0%}"
                                           for ok, n in totals))
    print()
    for r in runs:
        job, docs = r["job"], max(r["job"]["documents_total"], 1)
        print(f"{r['mode']}: {job['llm_calls']} LLM calls ({job['llm_calls'] / docs:.1f} per "
              f"document), {_seconds(job) / docs:.1f} s per document (job), CLI wall "
              f"{r['wall']:.0f} s, {r['failed']} failed cells, tokens in/out "
              f"{job['tokens_in']}/{job['tokens_out']}, server RSS "
              f"{(r['rss'] or 0) / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
