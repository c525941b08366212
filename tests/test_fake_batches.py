"""The fake server's Files and Batch APIs, through the real openai SDK over HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import openai
import pytest

from testing.fake_llm_server import FakeLLMServer


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(model="fake-model", seed=7) as fake:
        yield fake


def _line(i: int, **body: object) -> dict:
    return {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "fake-model",
                     "messages": [{"role": "user", "content": f"question {i}"}], **body}}


def _submit(client: openai.OpenAI, lines: list[dict] | bytes) -> str:
    data = lines if isinstance(lines, bytes) else "".join(json.dumps(x) + "\n"
                                                          for x in lines).encode()
    file = client.files.create(file=("in.jsonl", data), purpose="batch")
    assert client.files.retrieve(file.id).bytes == len(data)
    batch = client.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"job": "j1"})
    assert batch.status == "validating" and batch.metadata == {"job": "j1"}
    return batch.id


def _wait(client: openai.OpenAI, batch_id: str, timeout: float = 10) -> openai.types.Batch:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return batch
        assert time.monotonic() < deadline, batch.status
        time.sleep(0.05)


def _jsonl(client: openai.OpenAI, file_id: str | None) -> list[dict]:
    if file_id is None:
        return []
    return [json.loads(x) for x in client.files.content(file_id).text.splitlines()]


def test_a_batch_goes_through_its_states_and_answers_like_chat(server: FakeLLMServer) -> None:
    client = server.client()
    server.batches.completion_delay = 0.6
    batch_id = _submit(client, [_line(i) for i in range(3)])
    seen = set()
    while (batch := client.batches.retrieve(batch_id)).status != "completed":
        seen.add((batch.status, batch.request_counts.completed if batch.request_counts else 0))
        time.sleep(0.05)
    assert {s for s, _ in seen} <= {"validating", "in_progress", "finalizing"}
    assert any(s == "in_progress" and 0 < n < 3 for s, n in seen)  # lines complete one by one
    assert batch.request_counts.completed == 3 and batch.error_file_id is None
    lines = _jsonl(client, batch.output_file_id)
    assert [x["custom_id"] for x in lines] == ["r0", "r1", "r2"]
    body = lines[0]["response"]["body"]
    assert lines[0]["response"]["status_code"] == 200
    assert body["object"] == "chat.completion" and body["usage"]["prompt_tokens"] > 0
    assert server.batches.counts["lines_processed"] == 3
    assert [b.id for b in client.batches.list(limit=5)] == [batch_id]


def test_failed_share_and_faults_go_to_the_error_file(server: FakeLLMServer) -> None:
    client = server.client()
    server.fail_when("question 1", "429")  # the chat path's fault plan applies to lines
    batch = _wait(client, _submit(client, [_line(i) for i in range(3)]))
    errors = _jsonl(client, batch.error_file_id)
    assert batch.request_counts.failed == 1 and [e["custom_id"] for e in errors] == ["r1"]
    assert errors[0]["response"]["status_code"] == 429
    server.clear_faults()
    server.batches.fail_share = 1.0
    batch = _wait(client, _submit(client, [_line(i) for i in range(2)]))
    assert batch.output_file_id is None and batch.request_counts.failed == 2


def test_expired_and_cancelled_batches_name_the_lines_left(server: FakeLLMServer) -> None:
    client = server.client()
    server.batches.completion_delay = 2.0
    server.batches.expire_after = 0.2
    batch = _wait(client, _submit(client, [_line(i) for i in range(4)]))
    assert batch.status == "expired" and batch.expired_at is not None
    codes = {e["error"]["code"] for e in _jsonl(client, batch.error_file_id)}
    assert codes == {"batch_expired"}
    server.batches.expire_after = None
    batch_id = _submit(client, [_line(i) for i in range(4)])
    time.sleep(0.3)
    assert client.batches.cancel(batch_id).status == "cancelling"
    batch = _wait(client, batch_id)
    assert batch.status == "cancelled"
    assert {e["error"]["code"] for e in _jsonl(client, batch.error_file_id)} == \
        {"batch_cancelled"}
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(batch_id)


def test_input_that_does_not_validate_fails_the_batch(server: FakeLLMServer) -> None:
    client = server.client()
    bad = (json.dumps(_line(0)) + "\nnot json\n" + json.dumps(_line(0)) + "\n").encode()
    batch = _wait(client, _submit(client, bad))
    assert batch.status == "failed" and batch.failed_at is not None
    assert [(e.code, e.line) for e in batch.errors.data] == [
        ("invalid_json_line", 2), ("duplicate_custom_id", 3)]
    server.batches.max_requests = 1
    batch = _wait(client, _submit(client, [_line(0), _line(1)]))
    assert batch.status == "failed" and batch.errors.data[0].code == "too_many_requests"
    with pytest.raises(openai.BadRequestError):
        client.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions",
                              completion_window="24h")


def test_without_the_batch_api_both_paths_answer_404() -> None:
    with FakeLLMServer(model="fake-model", batch_api=False) as fake:
        client = fake.client()
        with pytest.raises(openai.NotFoundError):
            client.files.create(file=("in.jsonl", b"{}\n"), purpose="batch")
        with pytest.raises(openai.NotFoundError):
            client.batches.retrieve("batch_1")
