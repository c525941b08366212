"""Asking the LLM for a variable's new instruction block: the answer's shape and the calls.

:func:`propose` sends every plan's request concurrently through an :data:`Ask`; a failure
stays with its variable, except a fatal provider error (bad credentials, unknown model), which
would fail every request and is raised. :class:`LLMAsk` is the default :data:`Ask`, over the
configured OpenAI-compatible endpoint.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pydantic import BaseModel, Field

from config.settings import Settings, get_settings
from extraction.errors import ExtractflowError, is_fatal
from extraction.review.refine_request import RefinementPlan

__all__ = [
    "REFINED_RATIONALE_MAX_CHARS",
    "Ask",
    "LLMAsk",
    "RefinedBlock",
    "llm_ask",
    "propose",
    "propose_then_close",
]

REFINE_TEMPERATURE = 0.0
#: Room for the new block and the rationale (a block is typically 150–400 tokens).
REFINE_MAX_TOKENS = 2048
REFINED_RATIONALE_MAX_CHARS = 800

#: Calls the LLM with chat messages and a response model; returns the parsed answer.
Ask = Callable[[list[dict[str, str]], type[BaseModel]], Awaitable[BaseModel]]


class RefinedBlock(BaseModel):
    """What the LLM returns for one variable."""

    # The rationale is length-bounded (grammar-enforced on llama.cpp, re-asked elsewhere). The
    # block is bounded only by REFINE_MAX_TOKENS: llama-cpp-python's grammar parser fails, and
    # its server process dies, on a maxLength above ~1,000 (measured: 2,000 and 6,000 crash).
    instruction_block: str = Field(
        description="The complete rewritten instruction block of the variable, starting with "
        "its heading line and keeping its answer format; no worked examples, no document text.")
    rationale: str = Field(
        max_length=REFINED_RATIONALE_MAX_CHARS,
        description="One to three sentences: what was changed and which corrections it "
        "addresses.")



async def propose(
    ask: Ask, plans: Sequence[RefinementPlan], *, concurrency: int = 4
) -> list[RefinedBlock | ExtractflowError]:
    """Ask for every plan's new block concurrently; a failure stays with its variable.

    Raises:
        LLMError: a fatal provider error (bad credentials, unknown model) — it would fail
            every request, so there is no point going on.
    """
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(plan: RefinementPlan) -> RefinedBlock | ExtractflowError:
        async with gate:
            try:
                answer = await ask(plan.messages, RefinedBlock)
            except ExtractflowError as exc:
                if is_fatal(exc):
                    raise
                return exc
        return answer if isinstance(answer, RefinedBlock) \
            else RefinedBlock.model_validate(answer.model_dump())

    return list(await asyncio.gather(*(one(p) for p in plans)))


class LLMAsk:
    """An :data:`Ask` over :class:`~extraction.llm.client.LLMClient`, built from settings.

    The client is created on the first call, inside the event loop that makes the calls, and
    closed by :meth:`aclose` in that same loop (an async HTTP pool belongs to one loop).
    """

    def __init__(self, settings: Settings, *, model: str | None = None) -> None:
        self.settings = settings
        self.model = model
        self._client: Any = None

    async def __call__(self, messages: list[dict[str, str]],
                       response_model: type[BaseModel]) -> BaseModel:
        if self._client is None:
            from extraction.llm.client import LLMClient

            self._client = LLMClient.from_settings(self.settings, model=self.model)
        return await self._client.complete_structured(
            messages, response_model, temperature=REFINE_TEMPERATURE,
            max_tokens=REFINE_MAX_TOKENS)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            close = getattr(client, "aclose", None) or getattr(client, "close", None)
            if close is not None:
                result = close()
                if asyncio.iscoroutine(result):
                    await result


def llm_ask(settings: Settings | None = None, *, model: str | None = None) -> LLMAsk:
    """The :data:`Ask` refinement uses by default: the configured OpenAI-compatible endpoint."""
    return LLMAsk(settings or get_settings(), model=model)


async def propose_then_close(
    ask: Ask, plans: Sequence[RefinementPlan], *, concurrency: int
) -> list[RefinedBlock | ExtractflowError]:
    """:func:`propose`, then close ``ask`` (its HTTP pool belongs to this event loop)."""
    # In flight at once: the same per-process bound as extraction calls
    # (EXTRACTFLOW_LLM_CONCURRENCY), so a small local server is not handed more long
    # rewrites than it can serve before the timeout.
    try:
        return await propose(ask, plans, concurrency=concurrency)
    finally:
        close = getattr(ask, "aclose", None)
        if close is not None:
            await close()
