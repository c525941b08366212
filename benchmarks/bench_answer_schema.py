"""Which answer layout small models fill right: models × layouts × accuracy × seconds per document.

For each bundled model (served by the project's own ``start_local_server``, one thread) and
each answer layout of :data:`extraction.llm.response_models.LAYOUTS` (today's status-first;
value first with the status derived from a null value; evidence first; shorter keys), sends
the first N demo reports through the real LLMClient with the example codebook's generated
prompts and the message layout of the extractor, and scores every value against the corpus's
known answers with the demo's rules. A per_document call answers all 8 variables.

It calls the client directly (not the whole run) so the layouts differ in nothing but the
answer schema. The first call of each layout pays for the shared prompt prefix; the others
reuse llama.cpp's prompt cache, as a run does — seconds per document are the mean over all.

Usage (CPU-heavy: use few documents on a shared machine)::

    .venv/bin/python -m benchmarks.bench_answer_schema --docs 3
    .venv/bin/python -m benchmarks.bench_answer_schema --models qwen2.5-coder-0.5b \\
        --layouts value_first status_first --docs 5 --mode per_variable
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from config.settings import get_settings
from examples.clinical_trials_corpus import truth_by_filename, write_corpus
from extraction.documents.core import parse_document
from extraction.llm import local_model
from extraction.llm.client import LLMClient
from extraction.llm.response_models import LAYOUTS, answers_by_variable, response_model
from extraction.models import VariableType
from extraction.prompts.templates import build_prompt
from extraction.run.extractor import build_messages
from extraction.run.results import VariableInfo
from scripts.demo import CODEBOOK, _same

MODELS = ("smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")


def codebook() -> tuple[list[VariableInfo], str]:
    """The example codebook's variables and domain context."""
    data = yaml.safe_load(CODEBOOK.read_text(encoding="utf-8"))
    variables = [
        VariableInfo(uuid.uuid4(), v["name"], v.get("label", ""), VariableType(v["type"]),
                     instructions=v.get("instructions", ""),
                     categories=tuple(v["categories"]) if v.get("categories") else None,
                     allow_other=bool(v.get("allow_other")), unit=v.get("unit"),
                     required=bool(v.get("required")))
        for v in data["variables"]
    ]
    return variables, data["project"].get("domain_context", "")


def documents(count: int, folder: Path) -> list[tuple[str, str]]:
    """(file name, parsed text) of the first ``count`` demo reports, as ingest reads them."""
    paths = sorted(write_corpus(folder))[:count]
    return [(p.name, parse_document(p).text) for p in paths]


async def run_layout(client: LLMClient, layout: str, mode: str, variables: list[VariableInfo],
                     context: str, docs: list[tuple[str, str]]) -> dict[str, Any]:
    prompts = {v.name: build_prompt(v, context) for v in variables}
    truth = truth_by_filename()
    hits: dict[str, int] = {v.name: 0 for v in variables}
    failed = 0
    started = time.perf_counter()
    for filename, text in docs:
        units = [variables] if mode == "per_document" else [[v] for v in variables]
        for unit in units:
            system = prompts[unit[0].name].system_template
            blocks = [prompts[v.name].user_template for v in unit]
            messages = build_messages(system, blocks, text,
                                      document_first=mode == "per_variable")
            model = response_model(unit, mode, layout)
            max_tokens = sum(prompts[v.name].max_tokens for v in unit)
            try:
                result = await client.complete(messages, model, max_tokens=max_tokens)
            except Exception as exc:  # noqa: BLE001 - a failed call scores 0 and is counted
                failed += len(unit)
                print(f"  {layout} {filename}: call failed: {exc}", flush=True)
                continue
            for name, answer in answers_by_variable(result.output, unit).items():
                hits[name] += _same(name, answer.value, truth[filename][name])
    seconds = time.perf_counter() - started
    return {"layout": layout, "hits": hits, "failed": failed, "seconds": seconds,
            "docs": len(docs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS[1:]))
    parser.add_argument("--layouts", nargs="+", choices=list(LAYOUTS), default=list(LAYOUTS))
    parser.add_argument("--docs", type=int, default=3, help="The first N demo reports (1-20).")
    parser.add_argument("--mode", choices=("per_document", "per_variable"),
                        default="per_document")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    variables, context = codebook()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        docs = documents(args.docs, Path(tmp) / "corpus")
        for name in args.models:
            with local_model.start_local_server(model=name, threads=args.threads) as server:
                settings = get_settings(llm_base_url=server.base_url, llm_model=server.model_name,
                                        llm_api_key="sk-local", llm_instructor_mode="tools",
                                        llm_timeout=600, llm_max_retries=0)
                for layout in args.layouts:
                    async def one(layout: str = layout,
                                  settings: Any = settings) -> dict[str, Any]:
                        client = LLMClient.from_settings(settings)
                        try:
                            return await run_layout(client, layout, args.mode, variables,
                                                    context, docs)
                        finally:
                            await client.aclose()

                    row = asyncio.run(one())
                    row["model"] = name
                    rows.append(row)
                    ok = sum(row["hits"].values())
                    print(f"{name} {layout}: {ok}/{len(variables) * len(docs)} right, "
                          f"{row['seconds'] / len(docs):.1f} s/doc", flush=True)
    names = [v.name for v in variables]
    print(f"\n{args.mode}, first {args.docs} demo reports, {len(names)} variables each\n")
    print("| model | layout | right | accuracy | s/doc | failed | "
          + " | ".join(names) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(names))
    for row in rows:
        ok, total = sum(row["hits"].values()), len(names) * row["docs"]
        print(f"| {row['model']} | {row['layout']} | {ok}/{total} | {ok / total:.0%} | "
              f"{row['seconds'] / row['docs']:.1f} | {row['failed']} | "
              + " | ".join(f"{row['hits'][n]}/{row['docs']}" for n in names) + " |")


if __name__ == "__main__":
    main()
