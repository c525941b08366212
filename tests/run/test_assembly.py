"""A run's knobs, sizing and engine (extraction/run/assembly.py), without Prefect."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from config.settings import Settings, get_settings
from extraction.errors import FatalRunError, LLMError, ValidationError, is_fatal
from extraction.models import JobKind, VariableType
from extraction.run.assembly import (
    RunOptions,
    build_engine,
    calls_per_document,
    close_engine,
    documents_in_flight,
    run_slots,
)
from extraction.run.plan import RunPlan
from extraction.run.results import VariableInfo
from testing.fake_llm_server import FakeLLMServer


def _plan(mode: str, variables: int) -> RunPlan:
    infos = tuple(VariableInfo(id=uuid.uuid4(), name=f"v{i}", label=f"V{i}",
                               type=VariableType.TEXT) for i in range(variables))
    return RunPlan(job_id=uuid.uuid4(), project_id=uuid.uuid4(), kind=JobKind.FULL, mode=mode,
                   model="fake-model", variables=infos, prompts={})


def test_options_take_the_settings_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTRACTFLOW_LLM_CONCURRENCY", "5")
    monkeypatch.setenv("EXTRACTFLOW_DOCUMENTS_PER_CHUNK", "7")
    settings = Settings()
    defaults = RunOptions.resolve(settings)
    assert (defaults.llm_concurrency, defaults.documents_per_chunk) == (5, 7)
    assert defaults.chunks_in_flight == settings.chunks_in_flight
    assert defaults.stop_after_unreachable == settings.stop_after_unreachable_documents
    given = RunOptions.resolve(settings, llm_concurrency=2, documents_per_chunk=3,
                               chunks_in_flight=4, stop_after_unreachable=0)
    assert (given.llm_concurrency, given.documents_per_chunk, given.chunks_in_flight,
            given.stop_after_unreachable) == (2, 3, 4, 0)  # 0 is a value, not "unset"


@pytest.mark.parametrize(("name", "value"), [("llm_concurrency", 0),
                                             ("documents_per_chunk", -1),
                                             ("chunks_in_flight", 0),
                                             ("stop_after_unreachable", -2)])
def test_options_out_of_range_name_the_knob(name: str, value: int) -> None:
    with pytest.raises(ValidationError) as raised:
        RunOptions.resolve(get_settings(), **{name: value})
    assert raised.value.field == name and str(value) in raised.value.detail


def test_a_run_asks_for_its_concurrency_capped_by_the_limit() -> None:
    assert run_slots(8, 32, limit_name="llm") == 8
    assert run_slots(8, 3, limit_name="llm") == 3
    with pytest.raises(FatalRunError) as raised:
        run_slots(8, 0, limit_name="shared-llm")
    assert "'shared-llm' has 0 slots" in raised.value.reason and is_fatal(raised.value)


def test_calls_per_document_follow_the_mode() -> None:
    assert calls_per_document(_plan("per_document", 5)) == 1
    assert calls_per_document(_plan("per_variable", 5)) == 5
    assert calls_per_document(_plan("per_variable", 0)) == 1


@pytest.mark.parametrize(("slots", "calls", "expected"), [
    (1, 1, 3),     # one document fills the slot, two spare
    (8, 1, 10),    # eight fill the slots, max(2, 8 // 4) = 2 spare
    (32, 1, 40),   # 32 + 8 spare
    (32, 5, 15),   # ceil(32 / 5) = 7 documents fill the slots, 8 spare
    (4, 10, 3),    # one document has more calls than the slots: still 2 spare
])
def test_documents_in_flight_fill_every_slot_and_keep_spares(
        slots: int, calls: int, expected: int) -> None:
    in_flight = documents_in_flight(slots, calls)
    assert in_flight == expected
    assert (in_flight - 2) * calls >= slots  # without the spares every slot is still busy


def test_the_engine_is_built_in_the_run_mode_and_talks_to_the_server(
        fake_llm: FakeLLMServer) -> None:
    from extraction.llm.client import LLMClient
    from extraction.run.extractor import Extractor

    entered: list[int] = []

    class CountingLimiter:
        async def __aenter__(self) -> None:
            entered.append(1)

        async def __aexit__(self, *exc: object) -> None:
            return None

    settings = get_settings()
    client, extractor = build_engine(settings, _plan("per_variable", 2), CountingLimiter)
    assert isinstance(client, LLMClient) and isinstance(extractor, Extractor)
    assert extractor.mode == "per_variable" and client.base_url.startswith(fake_llm.base_url)

    async def ask() -> None:
        try:
            from pydantic import BaseModel

            class Answer(BaseModel):
                value: str | None = None

            await client.complete([{"role": "user", "content": "hello"}], Answer)
        finally:
            await close_engine(client)

    asyncio.run(ask())
    assert fake_llm.total_requests == 1 and entered == [1]  # every call passes the limiter


def test_an_unknown_mode_is_a_fatal_error(fake_llm: FakeLLMServer) -> None:
    with pytest.raises(LLMError) as raised:
        build_engine(get_settings(), _plan("per_page", 1), None)
    assert is_fatal(raised.value) and "per_page" in raised.value.detail
