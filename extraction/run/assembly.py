"""What a run's extract stage is made of, and how large it is.

The run flows only compose; the decisions are here, testable without Prefect:

* :class:`RunOptions` — the tuning knobs the flows take as parameters (``None`` means the
  setting of the same name), checked once.
* :func:`run_slots` — how many slots of the shared global limit one run holds.
* :func:`documents_in_flight` — how many documents the runner extracts at the same time.
* :func:`call_limiter` — what every LLM call of the run enters: within the run's slots.
* :func:`build_engine` — the LLM client behind the run's limiter, and the extractor in the
  run's mode; :func:`close_engine` closes the client in the loop that used it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from config.settings import Settings
from extraction.errors import FatalRunError, ValidationError
from extraction.llm.limits import TokenBucket, combine, within
from extraction.run import preload
from extraction.run.plan import RunPlan

if TYPE_CHECKING:
    from extraction.llm.client import LLMClient
    from extraction.run.extractor import Extractor

__all__ = [
    "RunOptions",
    "build_engine",
    "call_limiter",
    "calls_per_document",
    "close_engine",
    "documents_in_flight",
    "run_slots",
]


@dataclass(frozen=True)
class RunOptions:
    """How hard a run drives the LLM and how it cuts its documents into chunks.

    Attributes:
        llm_concurrency: In-flight LLM calls in this process (and the global slots asked for).
        documents_per_chunk: Documents per extract task run, and per database write batch.
        chunks_in_flight: Chunks of the run in progress at the same time.
        stop_after_unreachable: Stop the run after this many documents in a row could not
            reach the LLM server; 0 never stops.
        progress_flush_seconds: Write finished documents at least this often.
        max_cost_usd: The run's budget cap in US dollars, when given as a parameter; None:
            the job's own cap (``--max-cost``), else EXTRACTFLOW_MAX_COST_USD.
    """

    llm_concurrency: int
    documents_per_chunk: int
    chunks_in_flight: int
    stop_after_unreachable: int
    progress_flush_seconds: float
    max_cost_usd: float | None = None

    @classmethod
    def resolve(
        cls,
        settings: Settings,
        *,
        llm_concurrency: int | None = None,
        documents_per_chunk: int | None = None,
        chunks_in_flight: int | None = None,
        stop_after_unreachable: int | None = None,
        max_cost_usd: float | None = None,
    ) -> RunOptions:
        """Explicit values win; ``None`` takes the setting.

        Raises:
            ValidationError: A concurrency, chunk size or chunks in flight below 1, or a
                negative ``stop_after_unreachable``.
        """
        for name, value, least in (("llm_concurrency", llm_concurrency, 1),
                                   ("documents_per_chunk", documents_per_chunk, 1),
                                   ("chunks_in_flight", chunks_in_flight, 1),
                                   ("stop_after_unreachable", stop_after_unreachable, 0)):
            if value is not None and value < least:
                raise ValidationError(f"{name} must be at least {least}, got {value}",
                                      field=name)
        if max_cost_usd is not None and not max_cost_usd > 0:
            raise ValidationError(f"max_cost_usd must be above 0, got {max_cost_usd}",
                                  field="max_cost_usd")
        return cls(
            llm_concurrency=_given(llm_concurrency, settings.llm_concurrency),
            documents_per_chunk=_given(documents_per_chunk, settings.documents_per_chunk),
            chunks_in_flight=_given(chunks_in_flight, settings.chunks_in_flight),
            stop_after_unreachable=_given(stop_after_unreachable,
                                          settings.stop_after_unreachable_documents),
            progress_flush_seconds=settings.progress_flush_seconds,
            max_cost_usd=max_cost_usd,
        )


def _given(value: int | None, default: int) -> int:
    return default if value is None else value


def run_slots(llm_concurrency: int, limit_size: int, *, limit_name: str) -> int:
    """The slots one run holds of the shared limit: its own concurrency, at most the limit.

    Raises:
        FatalRunError: The limit has no slot at all (an operator set it to 0): no call
            could ever be made, so the run fails at once instead of waiting forever.
    """
    slots = min(llm_concurrency, limit_size)
    if slots < 1:
        raise FatalRunError(
            f"the Prefect global concurrency limit '{limit_name}' has 0 slots: no LLM call "
            "can be made")
    return slots


def calls_per_document(plan: RunPlan) -> int:
    """LLM calls one document has in flight at once: 1 per_document, one per variable else."""
    return 1 if plan.mode == "per_document" else max(1, len(plan.variables))


def documents_in_flight(slots: int, per_document_calls: int) -> int:
    """How many documents the runner works on at the same time, given ``slots`` calls.

    ``ceil(slots / per_document_calls)`` documents are just enough to fill every slot — but
    only while each of them is inside a call. A document also spends time outside calls
    (its cells are read, re-used cells copied, answers grounded, results queued for the
    batch write), and in per_variable mode its calls end at different times, so with only
    that many documents slots would stand idle between one document's last answer and the
    next document's first request. A quarter of the slots more (at least two) keeps
    requests queued at the limiter, which still caps the calls; more than that would only
    hold more document texts in memory and make a cancel wait for more documents.
    """
    filling = -(-slots // per_document_calls)  # ceiling division
    return filling + max(2, slots // 4)


def call_limiter(slots: int, process: Any, bucket: TokenBucket | None) -> Any:
    """The limiter the run's LLM client enters around each HTTP attempt.

    The run holds ``slots`` slots of the global limit, and that is the number of calls it
    may have in flight — not the process limiter's size (``llm_concurrency``, which can be
    larger than the limit on the server) and not the documents in flight (which are more
    than the slots, see :func:`documents_in_flight`). So the run's own cap of ``slots``
    comes first, then the process limiter shared by the runs of this process, and before
    both the shared call rate.
    """
    return combine(within(slots, process), bucket)


def build_engine(settings: Settings, plan: RunPlan, limiter: Any
                 ) -> tuple[LLMClient, Extractor]:
    """The engine for a run: an LLM client behind ``limiter`` and an extractor in its mode.

    Blocking (it may wait for the background import of the LLM stack, see
    :mod:`extraction.run.preload`): call it from a worker thread in async code.

    Raises:
        ConfigError: An LLM base URL that is not http(s).
        LLMError: An unknown extraction mode (fatal).
    """
    preload.wait()
    # Imported here, not at module level: the flows import this module early, and the LLM
    # stack is what the background import is for.
    from extraction.llm.client import LLMClient
    from extraction.run.extractor import Extractor

    client = LLMClient.from_settings(settings, limiter=limiter, model=plan.model or None)
    return client, Extractor(client, mode=plan.mode, settings=settings)  # type: ignore[arg-type]


async def close_engine(client: Any) -> None:
    """Close the client's HTTP pool (``aclose``, else ``close``) in the loop that used it."""
    for name in ("aclose", "close"):
        method = getattr(client, name, None)
        if method is not None:
            result = method()
            if asyncio.iscoroutine(result):
                await result
            return
