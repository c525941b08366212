"""Request lines, custom ids, results read back, parts within limits (plain data)."""

from __future__ import annotations

import json
import uuid

from extraction.run.batch.lines import (
    call_key,
    custom_id,
    parse_custom_id,
    read_results,
    request_line,
)
from extraction.run.batch.submit import split_parts

JOB, DOC = uuid.uuid4(), uuid.uuid4()


def _out(line_id: str, status: int = 200, **extra: object) -> bytes:
    body = {"choices": [{"message": {"content": "{}"}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3,
                      "prompt_tokens_details": {"cached_tokens": 4}}} if status == 200 else \
        {"error": {"message": "boom"}}
    return (json.dumps({"custom_id": line_id, "response": {"status_code": status,
                                                            "body": body}, **extra}) + "\n"
            ).encode()


def test_custom_ids_name_job_document_and_call() -> None:
    key = call_key({"messages": [{"role": "user", "content": "x"}], "model": "m"})
    assert key == call_key({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    line_id = custom_id(JOB, DOC, key)
    assert line_id.startswith(f"xf-{JOB.hex[:8]}-{DOC.hex}-") and len(line_id) <= 64
    assert parse_custom_id(line_id) == (JOB.hex[:8], DOC, key)
    assert parse_custom_id("request-1") is None
    line = json.loads(request_line(line_id, {"model": "m"}))
    assert line == {"custom_id": line_id, "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": "m"}}


def test_results_keep_one_answer_per_line_and_report_the_rest() -> None:
    a, b, c = (custom_id(JOB, DOC, k) for k in ("a" * 16, "b" * 16, "c" * 16))
    output = _out(a) + _out(a) + _out("xf-someone-else") + b"{broken\n"
    errors = _out(b, 500) + (json.dumps({"custom_id": c, "response": None, "error": {
        "code": "batch_expired", "message": "not run in time"}}) + "\n").encode()
    results = read_results(output, errors)
    assert results.answers[a].ok and not results.answers[b].ok
    assert results.answers[b].error == "HTTP 500: boom"
    assert results.answers[c].error == "batch_expired: not run in time"
    # what the provider billed: every answered line once (a's repeat is not counted twice)
    assert (results.tokens_in, results.tokens_out, results.tokens_cached) == (20, 6, 8)
    assert len(results.problems) == 2  # whose ids were asked for is the replay's to tell
    assert "repeats" in results.problems[0]
    assert "not a valid result line" in results.problems[1]


def test_parts_keep_a_documents_lines_together_within_both_limits() -> None:
    docs = {uuid.uuid4(): [f"line-{i}-{j}\n" for j in range(n)]
            for i, n in enumerate([2, 2, 1, 3])}
    parts = split_parts(docs, max_requests=4, max_bytes=10_000)
    assert [len(p.lines) for p in parts] == [4, 4]
    assert [len(p.document_ids) for p in parts] == [2, 2]
    by_size = split_parts(docs, max_requests=100, max_bytes=30)
    assert all(p.size <= 30 or len(p.document_ids) == 1 for p in by_size)
    assert sum(len(p.document_ids) for p in by_size) == 4
