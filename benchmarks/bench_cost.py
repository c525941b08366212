"""Benchmark: the cost estimate against a measured run, and the cost per 1,000 documents.

The demo codebook (``examples/clinical_trials.codebook.yaml``) over N generated reports (the
demo corpus's twenty trial records, each report numbered so all N differ), through the CLI
in child processes, against the fake OpenAI-compatible server (in this process; it bills the
request's schema like providers do and reports prompt-cache hits):

1. ``run full --estimate`` before any run (output tokens: the prompts' ``max_tokens``);
2. ``run sample --n 20``, then ``run full --estimate`` again (output: the sample's average);
3. ``run full``: the fake server counts the tokens it was sent and answered.

Printed: estimated vs measured calls and tokens (input, output, cached prefix), and the cost
per 1,000 documents at a named model's prices (``--model``, default gpt-4o-mini, from the
shipped price table) in sync, batch and cached-prefix modes, estimated and measured.
Tokens are request characters / 4 on both sides (no tokenizer offline): the comparison
checks the estimate's rendering of calls, not a tokenizer.

Usage::

    .venv/bin/python -m benchmarks.bench_cost                    # 1,000 documents
    .venv/bin/python -m benchmarks.bench_cost --docs 200 --mode per_variable
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

from config.settings import get_settings
from examples.clinical_trials_corpus import RECORDS, _paragraphs
from extraction.llm.prices import cost, load_prices
from scripts.demo import CODEBOOK, PROJECT
from testing.fake_llm_server import FakeLLMServer

ROOT = Path(__file__).resolve().parent.parent


def write_reports(directory: Path, count: int) -> None:
    """``count`` TXT reports from the demo records, numbered so that none repeats another."""
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        record = RECORDS[index % len(RECORDS)]
        paragraphs = [*_paragraphs(record, index), f"Report number {index + 1}."]
        (directory / f"report_{index + 1:05d}.txt").write_text("\n\n".join(paragraphs) + "\n",
                                                               encoding="utf-8")


def _cli(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run([sys.executable, "-m", "extraction", *args, "--json"], env=env,
                          cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout)


def _row(name: str, estimated: float, measured: float) -> str:
    off = (estimated - measured) / measured if measured else 0.0
    return f"| {name} | {estimated:,.0f} | {measured:,.0f} | {off:+.1%} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("--mode", default="per_document",
                        choices=["per_document", "per_variable"])
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    price = load_prices(get_settings()).get(args.model)
    if price is None:
        raise SystemExit(f"no price for {args.model} in the price table")

    with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp, \
            FakeLLMServer(model=None, count_request_schema=True, max_recorded=100) as server:
        root = Path(tmp)
        write_reports(root / "corpus", args.docs)
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXTRACTFLOW_")}
        env.update({
            "EXTRACTFLOW_HOME": str(root / "home"), "EXTRACTFLOW_LLM_BASE_URL": server.base_url,
            "EXTRACTFLOW_LLM_API_KEY": "sk-bench", "EXTRACTFLOW_LLM_MODEL": args.model,
            "EXTRACTFLOW_LLM_CONCURRENCY": str(args.concurrency),
            "EXTRACTFLOW_EXTRACTION_MODE": args.mode,
            "PYTHONPATH": str(ROOT),
        })
        _cli(env, "codebook", "apply", str(CODEBOOK))
        _cli(env, "docs", "add", PROJECT, str(root / "corpus"), "--no-flow")
        cold = _cli(env, "run", "full", PROJECT, "--estimate")
        _cli(env, "run", "sample", PROJECT, "--n", "20", "--seed", "1", "--allow-large")
        warm = _cli(env, "run", "full", PROJECT, "--estimate")
        server.reset()
        started = time.perf_counter()
        job = _cli(env, "run", "full", PROJECT, "--allow-large")
        seconds = time.perf_counter() - started
        used = dict(server.usage_totals)
        calls = server.total_requests

    done = job["documents_completed"]
    asked = warm["documents_to_do"]  # the documents the full run sent to the server
    run_s = (datetime.fromisoformat(job["finished_at"])
             - datetime.fromisoformat(job["started_at"])).total_seconds()
    print(f"## Cost estimate vs measured: {args.docs:,} documents, demo codebook, "
          f"{args.mode}, {args.model}\n")
    print(f"After a 20-document sample: {warm['documents_to_do']:,} documents to do "
          f"({warm['cells_reused']} cells re-used); run {job['status']}, {done:,} documents "
          f"in {run_s:.0f} s of job time, {seconds:.0f} s with the CLI's start-up (estimated "
          f"{warm['wall_seconds']:.0f} s of calls, {warm['seconds_per_call']} s per call "
          f"{warm['latency_basis']}).\n")
    print("| quantity | estimated | measured (fake server) | off |")
    print("|---|---|---|---|")
    print(_row("LLM calls", warm["calls"], calls))
    print(_row("input tokens", warm["tokens_in"], used.get("prompt_tokens", 0)))
    print(_row("output tokens (observed average)", warm["tokens_out"],
               used.get("completion_tokens", 0)))
    cold_out = cold["tokens_out"] * warm["documents_to_do"] / max(1, cold["documents_to_do"])
    print(_row("output tokens (schema max, before any run)", cold_out,
               used.get("completion_tokens", 0)))
    print(_row("cached-prefix tokens", warm["tokens_cached"], used.get("cached_tokens", 0)))
    print()

    per_k = 1000 / max(1, asked)
    m_in, m_out = used.get("prompt_tokens", 0), used.get("completion_tokens", 0)
    m_cached = used.get("cached_tokens", 0)
    e_scale = per_k
    print(f"Cost per 1,000 documents asked at {args.model} prices (USD per 1M tokens: input "
          f"{price.input}, cached input {price.cached_rate}, output {price.output}, batch "
          f"×{price.batch_discount}; {price.source}):\n")
    print("| mode | estimated | measured |")
    print("|---|---|---|")
    print(f"| sync | ${warm['cost_sync_usd'] * e_scale:.4f} | "
          f"${cost(price, m_in, m_out) * per_k:.4f} |")
    print(f"| batch | ${warm['cost_batch_usd'] * e_scale:.4f} | "
          f"${cost(price, m_in, m_out, batch=True) * per_k:.4f} |")
    print(f"| cached prefix | ${warm['cost_cached_usd'] * e_scale:.4f} | "
          f"${cost(price, m_in, m_out, tokens_cached=m_cached) * per_k:.4f} |")
    print(f"| the run's own cost (job.cost_usd) | – | ${(job['cost_usd'] or 0) * per_k:.4f} |")
    if price.cache_min_tokens:
        print(f"\n{args.model}'s provider caches only prompts of {price.cache_min_tokens:,}+ "
              "tokens; the estimate applies that rule, the fake server's cache does not.")


if __name__ == "__main__":
    main()
