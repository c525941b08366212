"""The fake server's answer faults: wrong values beside right quotes, right values with wrong
quotes — over real HTTP, in a thread server and in a server process."""

from __future__ import annotations

import json

import openai
import pytest

from testing.answer_faults import AnswerFaults, with_answer_faults
from testing.fake_llm_server import FakeLLMProcess, FakeLLMServer, SchemaResponder
from testing.run_factory import trial_text

SCHEMA = {
    "type": "object",
    "properties": {
        "enrollment": {"$ref": "#/$defs/enrollment"},
        "phase": {"$ref": "#/$defs/phase"},
    },
    "$defs": {
        "enrollment": {"type": "object", "properties": {
            "evidence": {"type": "string"}, "value": {"type": "number"},
            "confidence": {"type": "number"}}},
        "phase": {"type": "object", "properties": {
            "evidence": {"type": "string"},
            "value": {"anyOf": [{"enum": ["Phase 1", "Phase 2", "Phase 3"]}, {"type": "null"}]},
            "confidence": {"type": "number"}}},
    },
}


def _ask(base_url: str, document: str) -> dict:
    client = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0)
    reply = client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": f"<document>{document}</document>"}],
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}})
    return json.loads(reply.choices[0].message.content)


def test_wrong_value_keeps_the_right_quote_and_the_confidence() -> None:
    clean = _answers(AnswerFaults(SchemaResponder(), wrong_value=0.0))
    wrong = _answers(AnswerFaults(SchemaResponder(), wrong_value=1.0))
    for name in ("enrollment", "phase"):
        assert wrong[name]["evidence"] == clean[name]["evidence"]
        assert wrong[name]["confidence"] == clean[name]["confidence"] == 0.9
        assert wrong[name]["value"] != clean[name]["value"]
    assert clean["phase"]["value"] == "Phase 3"
    assert wrong["phase"]["value"] in ("Phase 1", "Phase 2")  # another category, not noise
    assert 0 < abs(wrong["enrollment"]["value"] - 102) <= 10


def test_wrong_quote_keeps_the_value_and_quotes_another_sentence() -> None:
    clean = _answers(AnswerFaults(SchemaResponder()))
    moved = _answers(AnswerFaults(SchemaResponder(), wrong_quote=1.0))
    for name in ("enrollment", "phase"):
        assert moved[name]["value"] == clean[name]["value"]
        assert moved[name]["evidence"] != clean[name]["evidence"]
        assert moved[name]["evidence"] in trial_text(2)  # still grounded


def test_the_cells_hit_depend_on_seed_document_and_variable_not_on_order() -> None:
    faults = AnswerFaults(SchemaResponder(), wrong_value=0.5, seed=11)
    with FakeLLMServer(responder=faults) as server:
        first = [_ask(server.base_url, trial_text(i)) for i in range(8)]
        again = [_ask(server.base_url, trial_text(i)) for i in reversed(range(8))][::-1]
    assert first == again
    assert 0 < faults.faulted["wrong_value"] < 32


def test_server_process_takes_answer_faults_on_its_command_line() -> None:
    with FakeLLMProcess(extra_args=["--answer-fault", "wrong_value:1"]) as server:
        answer = _ask(server.base_url, trial_text(2))
    assert answer["enrollment"]["value"] != 102.0
    assert answer["enrollment"]["evidence"] == "In total 102 participants were enrolled."


def test_bad_specs_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown answer fault 'wrong'"):
        with_answer_faults(SchemaResponder(), ["wrong:0.5"])
    with pytest.raises(ValueError, match="between 0 and 1"):
        AnswerFaults(SchemaResponder(), wrong_value=1.5)


def _answers(faults: AnswerFaults) -> dict:
    with FakeLLMServer(responder=faults) as server:
        return _ask(server.base_url, trial_text(2))
