"""The bundled local model's confidence on the demo corpus: does it rank its wrong values first?

One full run of the demo's 20 reports (per_document, the demo codebook with *sponsor_type*
aliases, see :func:`benchmarks.bench_confidence.aliased_codebook`) against the bundled default
model (``make local-model`` first), through the CLI as a user runs it, with
``second_opinion_samples`` extra samples per call (default 2; 0 for none). Every answered cell
is scored with the demo's rules against the corpus's known answers, and three confidences are
compared, all read from the one run (the factors multiply, so each is the stored value with
the later factors divided out):

* **before** — self-report × grounding (× the not_found contradiction): the formula before the
  value–quote check;
* **+ support** — × the support factor (what is stored without second opinions);
* **+ self-consistency** — × the samples' agreement factor (what is stored).

For each: AUROC (right vs wrong), expected calibration error and the review-budget table,
computed by :mod:`extraction.evaluate.calibration` (the code behind ``extractflow evaluate``).

Usage::

    python -m benchmarks.bench_confidence_local               # 20 reports, 2 samples
    python -m benchmarks.bench_confidence_local --docs 8 --samples 0
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_confidence import _cli, aliased_codebook
from examples.clinical_trials_corpus import truth_by_filename, write_corpus
from extraction.evaluate.calibration import calibration, review_budget
from extraction.llm import local_model
from extraction.run.confidence import UNSUPPORTED_FACTOR
from scripts.demo import PROJECT, _same

_SAMPLES = re.compile(r"samples: (\d+) of (\d+) agree")


def run(root: Path, docs: int, samples: int, model: str | None,
        threads: int | None = None) -> dict[str, Any]:
    """The run; its answered cells with their truth, the job and the wall time."""
    corpus = root / "corpus"
    for extra in sorted(write_corpus(corpus))[docs:]:
        extra.unlink()
    with local_model.start_local_server(model=model, threads=threads) as server:
        llm = server.llm_settings()
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXTRACTFLOW_")}
        env.update({
            "EXTRACTFLOW_HOME": str(root / "home"),
            "EXTRACTFLOW_LLM_BASE_URL": llm["base_url"],
            "EXTRACTFLOW_LLM_API_KEY": llm["api_key"], "EXTRACTFLOW_LLM_MODEL": llm["model"],
            "EXTRACTFLOW_LLM_INSTRUCTOR_MODE": llm["mode"], "EXTRACTFLOW_LLM_CONCURRENCY": "1",
            "EXTRACTFLOW_LLM_TIMEOUT": "1500",
            "EXTRACTFLOW_SECOND_OPINION_SAMPLES": str(samples),
            "PYTHONPATH": str(Path.cwd()),
        })
        _cli(env, "codebook", "apply", str(aliased_codebook(root)))
        _cli(env, "docs", "add", PROJECT, str(corpus), "--no-flow")
        started = time.perf_counter()
        job = _cli(env, "run", "full", PROJECT, "--mode", "per_document", "--allow-large")
        wall = time.perf_counter() - started
        results = _cli(env, "job", "results", job["id"], "--limit", "100000")
    rows = results["items"] if isinstance(results, dict) else results
    truth = truth_by_filename()
    cells = [{**row, "wrong": not _same(row["variable"], row["value"],
                                        truth[row["filename"]][row["variable"]])}
             for row in rows if row["status"] == "ok"]
    return {"cells": cells, "rows": rows, "job": job, "wall": wall}


def factors(cell: dict[str, Any]) -> tuple[float, float]:
    """(support factor, self-consistency factor) that the stored confidence holds."""
    support = UNSUPPORTED_FACTOR if cell.get("support") == "unsupported" else 1.0
    match = _SAMPLES.search(cell.get("opinion_reason") or "")
    consistency = (1 + int(match.group(1))) / (1 + int(match.group(2))) if match else 1.0
    return support, consistency


def confidences(cells: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    out: dict[str, list[float]] = {"before": [], "+ support": [], "+ self-consistency": []}
    for cell in cells:
        stored = cell["confidence"] if cell["confidence"] is not None else float("nan")
        support, consistency = factors(cell)
        out["+ self-consistency"].append(stored)
        out["+ support"].append(stored / consistency)
        out["before"].append(stored / consistency / support)
    return {k: np.array(v) for k, v in out.items()}


def _seconds(job: dict[str, Any]) -> float:
    return (datetime.fromisoformat(job["finished_at"])
            - datetime.fromisoformat(job["started_at"])).total_seconds()


def report(result: dict[str, Any], samples: int) -> None:
    cells, job = result["cells"], result["job"]
    right = np.array([not c["wrong"] for c in cells])
    docs = max(job["documents_total"], 1)
    print(f"\nbundled model {job.get('model')}, per_document, {docs} reports, "
          f"{samples} self-consistency samples per call")
    print(f"cells {len(result['rows'])}, answered {len(cells)}, wrong {int((~right).sum())}; "
          f"{job['llm_calls']} LLM calls ({job['llm_calls'] / docs:.1f} per report), job "
          f"{_seconds(job):.0f} s ({_seconds(job) / docs:.0f} s per report), CLI wall "
          f"{result['wall']:.0f} s")
    print("support of answered cells: " + ", ".join(
        f"{s} {sum(c.get('support') == s for c in cells)}"
        for s in ("supported", "unsupported", "not_checkable")))
    print(f"right values flagged unsupported: "
          f"{sum(c.get('support') == 'unsupported' for c in cells if not c['wrong'])} of "
          f"{int(right.sum())}; wrong values flagged: "
          f"{sum(c.get('support') == 'unsupported' for c in cells if c['wrong'])} of "
          f"{int((~right).sum())}")
    print(f"\n{'confidence':<20} {'AUROC':>6} {'ECE':>6} {'mean':>6}   review budget: "
          "accuracy after reviewing the least confident share (wrong caught)")
    total_wrong = max(int((~right).sum()), 1)
    for name, conf in confidences(cells).items():
        cal = calibration(conf, right)
        rows = review_budget(conf, right)
        budget = "  ".join(
            f"{r.share:.0%}: {r.accuracy_after:.0%} "
            f"({round((r.accuracy_after - r.accuracy_before) * len(cells))}/"
            f"{total_wrong})" for r in rows
            if r.accuracy_after is not None and r.accuracy_before is not None)
        auroc = f"{cal.auroc:.3f}" if cal.auroc is not None else "n/a"
        ece = f"{cal.ece:.3f}" if cal.ece is not None else "n/a"
        print(f"{name:<20} {auroc:>6} {ece:>6} {np.nanmean(conf):>6.3f}   {budget}")
    print(f"(accuracy of the answered cells before any review: {right.mean():.0%})")
    if samples:
        split = [c for c in cells if c.get("opinion") == "split"]
        print(f"samples disagreed on {len(split)} answered cells: "
              f"{sum(c['wrong'] for c in split)} wrong, {sum(not c['wrong'] for c in split)} "
              "right")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20, help="the first N reports (1-20)")
    parser.add_argument("--samples", type=int, default=2, help="self-consistency samples")
    parser.add_argument("--model", default=None, help="a bundled model (default: the default)")
    parser.add_argument("--threads", type=int, default=None, help="the model server's threads")
    parser.add_argument("--save", type=Path, default=None,
                        help="write the run's cells here (JSON), to report again with --load")
    parser.add_argument("--load", type=Path, default=None, help="report a saved run")
    args = parser.parse_args()
    if args.load:
        result = json.loads(args.load.read_text())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(Path(tmp), args.docs, args.samples, args.model, args.threads)
            result["samples"] = args.samples
        if args.save:
            args.save.write_text(json.dumps(result, default=str))
    report(result, int(result.get("samples", args.samples)))


if __name__ == "__main__":
    main()
