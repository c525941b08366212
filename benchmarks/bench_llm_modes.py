"""Calls and tokens for one document with 8 variables, per extraction mode × instructor mode.

Runs the real Extractor and LLMClient against the fake server (testing/fake_llm_server.py) with
the example codebook (examples/clinical_trials.codebook.yaml), its generated prompts, and a
short made-up trial report; the fake answers like a careful model (every value found, exact
quotes), so completion sizes are realistic.

Token columns:
* ``usage in/out`` — what the extractor accounted from the responses' ``usage``. The fake
  counts prompt tokens as the JSON size of ``messages`` / 4, so it does NOT count a tool
  schema sent in ``tools`` (real servers do: the chat template renders it into the prompt).
* ``request est.`` — the whole request body (messages + tools + response_format) / 4: a
  mode-neutral estimate of what a real server tokenises.

Run: ``.venv/bin/python -m benchmarks.bench_llm_modes``
"""

from __future__ import annotations

import asyncio
import json

from config.settings import get_settings
from extraction.llm.client import INSTRUCTOR_MODES, LLMClient
from extraction.run.extractor import Extractor
from testing.fake_llm_server import FakeLLMServer
from tests.run.test_extractor import ANSWERS, EXPECTED, PROMPTS, VARIABLES, document, oracle


def _request_tokens(body: dict) -> int:
    keys = ("messages", "tools", "tool_choice", "response_format")
    return len(json.dumps({k: body[k] for k in keys if k in body})) // 4


async def _run(server: FakeLLMServer, mode: str, instructor_mode: str) -> dict:
    settings = get_settings(llm_base_url=server.base_url, llm_model="fake-model",
                            llm_api_key="sk-bench", llm_instructor_mode=instructor_mode)
    client = LLMClient.from_settings(settings)
    server.reset()
    try:
        result = await Extractor(client, mode=mode, settings=settings).extract_document(
            document(), VARIABLES, PROMPTS)
    finally:
        await client.aclose()
    names = {v.id: v.name for v in VARIABLES}
    correct = sum(EXPECTED[names[c.variable_id]] == c.value for c in result.cells)
    return {
        "mode": mode, "instructor": instructor_mode, "calls": result.llm_calls,
        "http": server.total_requests, "usage_in": result.tokens_in,
        "usage_out": result.tokens_out,
        "request_est": sum(_request_tokens(r.body) for r in server.requests),
        "correct": f"{correct}/{len(VARIABLES)}",
    }


def main() -> None:
    rows = []
    with FakeLLMServer(model="fake-model", responder=oracle(ANSWERS)) as server:
        for mode in ("per_document", "per_variable"):
            for instructor_mode in INSTRUCTOR_MODES:
                rows.append(asyncio.run(_run(server, mode, instructor_mode)))
    header = ("mode", "instructor", "calls", "http", "usage_in", "usage_out", "request_est",
              "correct")
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(str(row[h]) for h in header))


if __name__ == "__main__":
    main()
