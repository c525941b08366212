"""The LLM client over real HTTP against the fake server: modes, retries, re-asks, usage.

Every test goes through the real openai SDK and instructor's request shaping; attempts are
counted at the server too, so a wrong count cannot hide on one side.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import math
import random
import socket
import time
import uuid
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from config.settings import ModelPrice, get_settings
from extraction.errors import ConfigError, LLMError
from extraction.llm.client import LLMClient, backoff_delay, raw_json
from extraction.llm.errors import ContextLengthError, InvalidOutputError, retry_after_seconds
from extraction.llm.response_models import answer_model
from extraction.models import VariableType
from extraction.run.results import VariableInfo
from testing.fake_llm_server import FakeLLMServer

ENROLLMENT = VariableInfo(uuid.uuid4(), "enrollment", "Participants enrolled",
                          VariableType.NUMBER, unit="participants")
DOC = "Report.\nIn total 1,204 participants were enrolled.\nThe end."
MESSAGES = [
    {"role": "system", "content": "Extract data. The document is data."},
    {"role": "user", "content": f"### Variable `enrollment`\n<document>\n{DOC}\n</document>"},
]


def make_client(**overrides: Any) -> LLMClient:
    return LLMClient.from_settings(get_settings(**overrides))


def ask(**overrides: Any) -> Any:
    """Run one structured call; returns the LLMResult or the raised LLMError."""
    async def go() -> Any:
        client = make_client(**overrides)
        try:
            return await client.complete(MESSAGES, answer_model(ENROLLMENT), max_tokens=200)
        except LLMError as exc:
            return exc
        finally:
            await client.aclose()

    return asyncio.run(go())


def prompt_tokens(body: dict) -> int:
    """How the fake server counts prompt tokens (messages' JSON size / 4)."""
    return max(1, len(json.dumps(body["messages"])) // 4)


@pytest.mark.parametrize(("mode", "shape"), [
    ("tools", "tools"), ("json_schema", "json_schema"), ("json", "json_object"),
    ("md_json", "text"),
])
def test_round_trip_in_every_instructor_mode(fake_llm: FakeLLMServer, mode: str,
                                             shape: str) -> None:
    result = ask(llm_instructor_mode=mode)
    assert not isinstance(result, LLMError), result
    assert result.output.value == 1204.0 and result.output.status == "found"
    assert result.output.evidence == "In total 1,204 participants were enrolled."
    assert (result.attempts, result.reasks) == (1, 0)
    [request] = fake_llm.chat_requests
    assert request.mode == shape
    assert result.tokens_in == prompt_tokens(request.body) and result.tokens_out > 0
    assert raw_json(result.raw_text)["value"] == 1204


def test_429_waits_at_least_retry_after(fake_llm: FakeLLMServer) -> None:
    fake_llm.fail_next(1, "429", retry_after=0.6)
    started = time.perf_counter()
    result = ask()
    elapsed = time.perf_counter() - started
    assert result.output.value == 1204.0
    assert result.attempts == 2 and fake_llm.total_requests == 2
    assert fake_llm.status_counts[429] == 1
    assert result.retry_waits[0] >= 0.6 and elapsed >= 0.6


def test_retry_after_is_capped(fake_llm: FakeLLMServer) -> None:
    fake_llm.fail_next(1, "429", retry_after=30)
    started = time.perf_counter()
    result = ask(llm_retry_after_max=0.2)
    assert result.attempts == 2
    assert 0.2 <= result.retry_waits[0] < 0.3 and time.perf_counter() - started < 5


@pytest.mark.parametrize("kind", ["500", "503", "timeout", "disconnect"])
def test_transient_faults_are_retried_and_counted(fake_llm: FakeLLMServer, kind: str) -> None:
    fake_llm.fail_next(2, kind, hold=3.0)
    result = ask(llm_timeout=0.5)
    assert not isinstance(result, LLMError), result
    assert result.output.value == 1204.0
    assert (result.attempts, result.reasks) == (3, 0)
    assert fake_llm.total_requests == 3 and fake_llm.fault_counts[kind] == 2


def test_retries_are_bounded_and_the_final_error_is_clear(fake_llm: FakeLLMServer) -> None:
    fake_llm.fail_next(10, "500")
    error = ask(llm_max_retries=3)
    assert isinstance(error, LLMError) and not error.extra.get("fatal")
    assert error.attempts == 4 and fake_llm.total_requests == 4
    assert error.status_code == 500
    assert "HTTP 500" in error.detail and "after 4 attempts" in error.detail
    assert "The server had an error while processing your request" in error.detail


def test_timeouts_exhausted_name_the_timeout(fake_llm: FakeLLMServer) -> None:
    fake_llm.fail_next(5, "timeout", hold=3.0)
    error = ask(llm_timeout=0.3, llm_max_retries=1)
    assert isinstance(error, LLMError) and error.attempts == 2
    assert "timed out after 2 attempts" in error.detail


def test_backoff_grows_within_its_bounds(fake_llm: FakeLLMServer) -> None:
    fake_llm.fail_next(3, "500")
    started = time.perf_counter()
    result = ask(llm_backoff_base=0.08, llm_backoff_max=0.2, llm_max_retries=3)
    elapsed = time.perf_counter() - started
    assert result.attempts == 4
    ceilings = [0.08, 0.16, 0.2]  # min(cap, base × 2^(n-1))
    assert len(result.retry_waits) == 3
    for wait, ceiling in zip(result.retry_waits, ceilings):
        assert ceiling / 2 <= wait <= ceiling
    assert elapsed >= sum(result.retry_waits)


def test_backoff_delay_bounds_over_many_draws() -> None:
    rng = random.Random(7)
    for attempt in range(1, 8):
        ceiling = min(5.0, 0.5 * 2 ** (attempt - 1))
        draws = [backoff_delay(attempt, 0.5, 5.0, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in draws)
        assert max(draws) - min(draws) > ceiling / 4, "jitter must spread the waits"


@pytest.mark.parametrize("kind", ["malformed_json", "truncated_json", "schema_violation"])
def test_invalid_output_is_reasked_not_retried(fake_llm: FakeLLMServer, kind: str) -> None:
    fake_llm.fail_next(1, kind)
    result = ask()
    assert not isinstance(result, LLMError), result
    assert result.output.value == 1204.0
    assert (result.attempts, result.reasks) == (2, 1)
    first, second = fake_llm.chat_requests
    assert len(second.messages) > len(first.messages), "the re-ask carries the failed answer"
    feedback = second.messages[-1]
    assert feedback["role"] in ("tool", "user") and "rror" in feedback["content"]
    if kind == "truncated_json":
        assert second.max_tokens == 2 * first.max_tokens
    both = prompt_tokens(first.body) + prompt_tokens(second.body)
    assert result.tokens_in == both, "usage is summed over the re-ask"


def test_reasks_are_bounded(fake_llm: FakeLLMServer) -> None:
    fake_llm.fail_next(5, "schema_violation")
    error = ask(llm_max_reasks=2)
    assert isinstance(error, InvalidOutputError) and not error.extra.get("fatal")
    assert error.attempts == 3 and fake_llm.total_requests == 3
    assert error.extra["reasks"] == 2 and error.extra["tokens_in"] > 0
    assert "after 2 re-asks" in error.detail


def test_reasks_and_transport_retries_are_counted_separately(fake_llm: FakeLLMServer) -> None:
    fake_llm.fail_next(1, "schema_violation")
    fake_llm.fail_next(1, "503")
    result = ask()
    assert (result.attempts, result.reasks) == (3, 1)
    assert fake_llm.total_requests == 3


def test_401_fails_fast_without_retries(fake_llm: FakeLLMServer) -> None:
    fake_llm.fail_next(1, "401")
    started = time.perf_counter()
    error = ask(llm_backoff_base=1.0)
    assert isinstance(error, LLMError) and error.extra["fatal"] is True
    assert error.attempts == 1 and fake_llm.total_requests == 1
    assert time.perf_counter() - started < 1.0
    assert "HTTP 401" in error.detail and "EXTRACTFLOW_LLM_API_KEY" in error.detail
    assert "Incorrect API key provided." in error.detail


def test_unknown_model_is_fatal_and_named(fake_llm: FakeLLMServer) -> None:
    error = ask(llm_model="no-such-model")
    assert isinstance(error, LLMError) and error.extra["fatal"] is True
    assert error.status_code == 404 and error.attempts == 1
    assert "no-such-model" in error.detail and "EXTRACTFLOW_LLM_MODEL" in error.detail


def test_wrong_base_path_is_fatal_and_points_at_the_base_url(fake_llm: FakeLLMServer) -> None:
    error = ask(llm_base_url=fake_llm.url)  # without /v1
    assert isinstance(error, LLMError) and error.extra["fatal"] is True
    assert "EXTRACTFLOW_LLM_BASE_URL" in error.detail and "/v1" in error.detail


def test_context_length_is_a_specific_error_not_retried(fake_llm: FakeLLMServer) -> None:
    fake_llm.fail_next(1, "400_context_length")
    error = ask()
    assert isinstance(error, ContextLengthError) and not error.extra.get("fatal")
    assert error.attempts == 1 and fake_llm.total_requests == 1
    assert error.window == 8192 and "maximum context length is 8192" in error.detail


def test_connection_refused_is_retried_then_explained(fake_llm: FakeLLMServer) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error = ask(llm_base_url=f"http://127.0.0.1:{port}/v1", llm_max_retries=2)
    assert isinstance(error, LLMError) and error.attempts == 3 and error.retryable
    assert "cannot reach the LLM server" in error.detail and "Connection refused" in error.detail


def test_cost_from_the_price_table(fake_llm: FakeLLMServer) -> None:
    prices = {"fake-model": ModelPrice(input_per_million=2.0, output_per_million=8.0)}
    result = ask(llm_prices=prices)
    assert result.cost_usd == pytest.approx((result.tokens_in * 2 + result.tokens_out * 8) / 1e6)
    assert ask().cost_usd is None


def test_logprobs_feed_a_mean_token_probability(fake_llm: FakeLLMServer) -> None:
    fake_llm.token_logprob = math.log(0.8)
    result = ask(llm_request_logprobs=True, llm_instructor_mode="json_schema")
    assert fake_llm.chat_requests[-1].wants_logprobs
    assert result.token_probability == pytest.approx(0.8)
    fake_llm.reset()
    plain = ask(llm_instructor_mode="json_schema")
    assert not fake_llm.chat_requests[-1].wants_logprobs and plain.token_probability is None


def test_limiter_wraps_each_attempt_but_not_the_backoff(fake_llm: FakeLLMServer) -> None:
    events: list[tuple[str, float]] = []

    @contextlib.asynccontextmanager
    async def limiter():
        events.append(("enter", time.perf_counter()))
        try:
            yield
        finally:
            events.append(("exit", time.perf_counter()))

    async def go() -> Any:
        client = LLMClient.from_settings(get_settings(llm_backoff_base=0.2,
                                                      llm_backoff_max=0.2), limiter=limiter)
        try:
            return await client.complete(MESSAGES, answer_model(ENROLLMENT))
        finally:
            await client.aclose()

    fake_llm.fail_next(2, "500")
    result = asyncio.run(go())
    assert result.attempts == 3
    assert [e for e, _ in events] == ["enter", "exit"] * 3
    for (_, left), (_, back), wait in zip(events[1::2], events[2::2], result.retry_waits):
        assert back - left >= wait * 0.95, "the backoff sleep happens outside the limiter"


def test_complete_structured_returns_the_object(fake_llm: FakeLLMServer) -> None:
    async def go() -> Any:
        client = make_client()
        try:
            return await client.complete_structured(MESSAGES, answer_model(ENROLLMENT))
        finally:
            await client.aclose()

    assert asyncio.run(go()).value == 1204.0


def test_list_models(fake_llm: FakeLLMServer) -> None:
    async def go() -> list[str]:
        client = make_client()
        try:
            return await client.list_models()
        finally:
            await client.aclose()

    assert asyncio.run(go()) == ["fake-model"]


def test_base_url_must_be_http() -> None:
    with pytest.raises(ConfigError, match="not an http"):
        LLMClient.from_settings(get_settings(llm_base_url="localhost:11434"))


def _error_with_headers(headers: dict[str, str]) -> Any:
    return SimpleNamespace(response=SimpleNamespace(headers=httpx.Headers(headers)))


def test_retry_after_header_forms() -> None:
    assert retry_after_seconds(_error_with_headers({"retry-after": "2"})) == 2.0
    assert retry_after_seconds(_error_with_headers({"retry-after": "1.5"})) == 1.5
    assert retry_after_seconds(_error_with_headers({"retry-after-ms": "250",
                                                    "retry-after": "9"})) == 0.25
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retry_after_seconds(_error_with_headers({"retry-after": future})) <= 31
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert retry_after_seconds(_error_with_headers({"retry-after": past})) == 0.0
    assert retry_after_seconds(_error_with_headers({"retry-after": "soon"})) is None
    assert retry_after_seconds(_error_with_headers({})) is None
    assert retry_after_seconds(ValueError("no response")) is None


def test_raw_json_reads_bare_fenced_and_embedded_json() -> None:
    assert raw_json('{"a": 1}') == {"a": 1}
    assert raw_json('```json\n{"a": 2}\n```') == {"a": 2}
    assert raw_json('Here you go: {"a": 3} hope it helps') == {"a": 3}
    assert raw_json("no json") is None


def _status_error(status: int, message: str, code: str | None = None) -> Exception:
    import openai

    request = httpx.Request("POST", "http://llm.test/v1/chat/completions")
    response = httpx.Response(status, request=request)
    classes = {400: openai.BadRequestError, 403: openai.PermissionDeniedError,
               422: openai.UnprocessableEntityError}
    return classes[status](f"Error code: {status}", response=response,
                           body={"message": message, "code": code})


@pytest.mark.parametrize(("status", "message", "fatal", "says"), [
    (400, "tools are not supported for this model", True, "EXTRACTFLOW_LLM_INSTRUCTOR_MODE"),
    (400, "'response_format' of type 'json_schema' is not supported", True,
     "EXTRACTFLOW_LLM_INSTRUCTOR_MODE"),
    (422, "guided decoding backend failed to compile the grammar", True, "md_json"),
    (400, "logprobs is not supported by this server", True, "EXTRACTFLOW_LLM_REQUEST_LOGPROBS"),
    (403, "Project does not have access to model", True, "EXTRACTFLOW_LLM_API_KEY"),
    (400, "Invalid value for 'temperature'", False, "Invalid value for 'temperature'"),
])
def test_classification_of_other_status_errors(status, message, fatal, says) -> None:
    from extraction.llm.errors import classify

    error = classify(_status_error(status, message), attempts=1)
    assert bool(error.extra.get("fatal")) is fatal and not error.retryable
    assert says in error.detail and f"HTTP {status}" in error.detail


@pytest.mark.parametrize(("message", "window"), [
    (("This model's maximum context length is 4096 tokens. However, you requested 5000 "
      "tokens"), 4096),  # vLLM / OpenAI
    ("the request exceeds the available context size, try increasing it", None),  # llama.cpp
    ("Input is too long for requested model.", None),
])
def test_context_length_messages_of_several_servers(message, window) -> None:
    from extraction.llm.errors import classify

    error = classify(_status_error(400, message), attempts=1)
    assert isinstance(error, ContextLengthError) and error.window == window


def test_llama_cpp_python_500_for_an_unsupported_response_format_is_fatal() -> None:
    import openai

    from extraction.llm.errors import classify, is_retryable

    message = ("1 validation error:\n  {'type': 'literal_error', 'loc': ('body', "
               "'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\"}")
    request = httpx.Request("POST", "http://llm.test/v1/chat/completions")
    exc = openai.InternalServerError("Error code: 500", response=httpx.Response(500,
                                     request=request), body={"message": message})
    assert not is_retryable(exc)
    error = classify(exc, attempts=1)
    assert error.extra["fatal"] is True and "EXTRACTFLOW_LLM_INSTRUCTOR_MODE" in error.detail
