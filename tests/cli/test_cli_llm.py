"""`extractflow llm check`: a working endpoint, and every failure explained in plain words."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from testing.fake_llm_server import ChatRequest, FakeLLMServer
from tests.cli_helpers import run_cli


def test_check_succeeds_and_reports_the_round_trip(fake_llm: FakeLLMServer) -> None:
    result = run_cli("llm", "check")
    assert result.exit_code == 0, result.stderr
    assert "fake-model" in result.stdout and "mode tools" in result.stdout
    assert "returned value 42.0" in result.stdout and " ms " in result.stdout
    assert fake_llm.path_counts["/v1/models"] == 1
    assert fake_llm.path_counts["/v1/chat/completions"] == 1


def test_check_json(fake_llm: FakeLLMServer) -> None:
    data = run_cli("llm", "check", "--json").json()
    assert data["ok"] is True and data["mode"] == "tools" and data["model"] == "fake-model"
    assert data["models"] == ["fake-model"]
    [check] = data["checks"]
    assert check["value"] == 42.0 and check["latency_ms"] > 0 and check["attempts"] == 1
    assert check["evidence"] == "The answer is 42."


def test_all_modes_are_tried_on_request(fake_llm: FakeLLMServer) -> None:
    data = run_cli("llm", "check", "--all-modes", "--json").json()
    assert data["working_modes"] == ["tools", "json_schema", "json", "md_json"]
    assert {r.mode for r in fake_llm.chat_requests} == {"tools", "json_schema", "json_object",
                                                        "text"}
    table = run_cli("llm", "check", "--all-modes").stdout
    assert "json_schema" in table and "md_json" in table


def test_bad_key_is_explained(fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_llm.api_key = "sk-the-right-one"
    human = run_cli("llm", "check")
    assert human.exit_code == 10
    assert "rejected the API key (HTTP 401: Incorrect API key provided.)" in human.stderr
    assert "EXTRACTFLOW_LLM_API_KEY" in human.stderr and "Traceback" not in human.stderr
    problem = run_cli("llm", "check", "--json").json()["error"]
    assert problem["step"] == "connectivity" and "API key" in problem["detail"]
    assert fake_llm.path_counts["/v1/chat/completions"] == 0, "no round trip after a 401"


def test_wrong_base_url_path_is_explained(fake_llm: FakeLLMServer) -> None:
    result = run_cli("llm", "check", "--base-url", fake_llm.url)  # no /v1
    assert result.exit_code == 10
    assert f"{fake_llm.url}/chat/completions does not exist (HTTP 404" in result.stderr
    assert "ending in /v1" in result.stderr


def test_connection_refused_is_explained() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_cli("llm", "check", "--base-url", f"http://127.0.0.1:{port}/v1")
    assert result.exit_code == 10
    assert f"cannot connect to http://127.0.0.1:{port}/v1: Connection refused" in result.stderr
    assert "server is running" in result.stderr


def test_missing_model_is_explained_with_the_servers_models(fake_llm: FakeLLMServer) -> None:
    result = run_cli("llm", "check", "--model", "llama-9000")
    assert result.exit_code == 10
    assert "the model 'llama-9000' is not available on the server (HTTP 404" in result.stderr
    assert "The server lists: fake-model." in result.stderr
    assert "llama-9000 is NOT listed" in result.stdout


def test_timeout_is_explained(fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTRACTFLOW_LLM_TIMEOUT", "0.3")
    fake_llm.fail_next(1, "timeout", hold=3.0)
    result = run_cli("llm", "check")
    assert result.exit_code == 10
    assert "within the timeout" in result.stderr and "EXTRACTFLOW_LLM_TIMEOUT" in result.stderr


class ToolBlindServer(FakeLLMServer):
    """A server that accepts ``tools`` but ignores them and answers in plain text."""

    async def _completion(self, request: ChatRequest, *args: Any) -> Any:
        body = {k: v for k, v in request.body.items() if k not in ("tools", "tool_choice")}
        return await super()._completion(ChatRequest(body, request.headers), *args)


@pytest.fixture
def tool_blind(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLMServer]:
    with ToolBlindServer(model="fake-model") as server:
        monkeypatch.setenv("EXTRACTFLOW_LLM_BASE_URL", server.base_url)
        monkeypatch.setenv("EXTRACTFLOW_LLM_MODEL", "fake-model")
        yield server


def test_server_without_tool_support_suggests_another_mode(tool_blind: FakeLLMServer) -> None:
    result = run_cli("llm", "check")
    assert result.exit_code == 10
    assert "not with valid structured output in mode 'tools'" in result.stderr
    assert "EXTRACTFLOW_LLM_INSTRUCTOR_MODE" in result.stderr
    problem = run_cli("llm", "check", "--all-modes", "--json").json()["error"]
    assert problem["working_modes"] == ["json_schema", "json", "md_json"]
    assert "EXTRACTFLOW_LLM_INSTRUCTOR_MODE=json_schema" in problem["detail"]
    assert run_cli("llm", "check", "--mode", "json_schema").exit_code == 0


def test_unknown_mode_option_is_a_usage_error() -> None:
    result = run_cli("llm", "check", "--mode", "xml")
    assert result.exit_code == 4 and "tools, json_schema, json, md_json" in result.stderr
