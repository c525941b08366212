"""The fake server's opinion faults: the first answer as AnswerFaults gives it, samples
(requests with a seed) and challengers (other models) varying — over real HTTP, in a thread
server and in a server process."""

from __future__ import annotations

import json

import openai
import pytest

from testing.answer_faults import AnswerFaults
from testing.fake_llm_server import FakeLLMProcess, FakeLLMServer, SchemaResponder
from testing.opinion_faults import OpinionFaults, with_opinion_faults
from testing.run_factory import trial_text
from tests.test_answer_faults import SCHEMA


def _ask(base_url: str, document: str, *, model: str = "fake-model",
         seed: int | None = None) -> dict:
    client = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0)
    extra = {} if seed is None else {"seed": seed}
    reply = client.chat.completions.create(
        model=model, temperature=0.7 if seed else 0.0,
        messages=[{"role": "user", "content": f"<document>{document}</document>"}],
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}},
        **extra)
    return json.loads(reply.choices[0].message.content)


def _values(answer: dict) -> tuple:
    return answer["enrollment"]["value"], answer["phase"]["value"]


def test_first_answers_match_answer_faults_and_samples_vary() -> None:
    documents = [trial_text(i) for i in range(12)]
    with FakeLLMServer(model=None, responder=AnswerFaults(
            SchemaResponder(), wrong_value=0.5, seed=4)) as plain:
        expected = [_values(_ask(plain.base_url, d)) for d in documents]
    faults = OpinionFaults(SchemaResponder(), wrong_value=0.5, repeat=0.0, noise=0.0,
                           challenger=1.0, seed=4)
    with FakeLLMServer(model=None, responder=faults) as server:
        first = [_values(_ask(server.base_url, d)) for d in documents]
        again = [_values(_ask(server.base_url, d)) for d in documents]
        sampled = [_values(_ask(server.base_url, d, seed=1)) for d in documents]
        judged = [_values(_ask(server.base_url, d, model="judge")) for d in documents]
    assert first == expected == again  # the first answer is stable and as AnswerFaults'
    right = [(100.0 + i, f"Phase {i % 3 + 1}") for i in range(12)]
    wrong_first = [(i, k) for i, (f, r) in enumerate(zip(first, right)) for k in range(2)
                   if f[k] != r[k]]
    assert wrong_first, "some first answers are wrong"
    for i, k in wrong_first:  # repeat=0: a sample never repeats the first wrong value
        assert sampled[i][k] != first[i][k]
    for i, (f, r) in enumerate(zip(first, right)):
        for k in range(2):
            if f[k] == r[k]:
                assert sampled[i][k] == r[k]  # noise=0: right stays right
            assert judged[i][k] != r[k]  # challenger=1.0: always wrong
    assert faults.faulted["challenger_wrong"] == 24


def test_bad_specs_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown opinion fault 'often'"):
        with_opinion_faults(SchemaResponder(), ["often:0.5"])
    with pytest.raises(ValueError, match="repeat must be a share"):
        OpinionFaults(SchemaResponder(), repeat=1.5)


def test_server_process_takes_opinion_faults() -> None:
    with FakeLLMProcess(model=["fake-model", "judge"], seed=2, extra_args=[
            "--opinion-fault", "wrong_value:0", "--opinion-fault", "challenger:1"]) as server:
        document = trial_text(2)
        assert _values(_ask(server.base_url, document)) == (102.0, "Phase 3")
        judged = _values(_ask(server.base_url, document, model="judge"))
    assert judged[0] != 102.0 and judged[1] != "Phase 3"
