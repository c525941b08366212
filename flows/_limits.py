"""The Prefect side of the LLM limits: create the shared limits, lease coarse slots, pace calls.

See ``extraction/llm/limits.py`` for the design. This module only talks to the Prefect API:

* :func:`ensure_limits` creates the global concurrency limit (and the rate limit, when a rate
  is configured) the first time any run needs them, with the sizes from settings. A limit
  that already exists is left as it is — the server is the source of truth, so an operator
  can resize it in the UI — and its real size is returned. Two workers racing to create it
  is fine (the loser reads the winner's).
* :func:`slot_lease` is a :class:`~extraction.llm.limits.SlotLease` over Prefect's
  ``concurrency(name, occupy=n, strict=True)``: one acquisition per run, not per call.
* :func:`rate_bucket` draws call tokens from Prefect's ``rate_limit`` in blocks.
* :func:`process_limiter` is this process's in-flight cap, shared by every run in it.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.asyncio import concurrency, rate_limit
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from config.settings import Settings
from extraction.llm.limits import ProcessLimiter, SlotLease, TokenBucket

__all__ = ["LimitSizes", "ensure_limits", "process_limiter", "rate_bucket", "slot_lease"]

logger = logging.getLogger(__name__)
_LIMITERS: dict[int, ProcessLimiter] = {}
_LOCK = threading.Lock()


class LimitSizes(dict):  # type: ignore[type-arg]
    """``{"concurrency": n, "rate": r or None}`` as found on (or created in) the server."""


async def _ensure(name: str, limit: int, decay: float = 0.0) -> int:
    async with get_client() as client:
        try:
            existing = await client.read_global_concurrency_limit_by_name(name)
            return int(existing.limit)
        except ObjectNotFound:
            pass
        try:
            await client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(
                    name=name, limit=limit, active=True, slot_decay_per_second=decay
                )
            )
            logger.info("created Prefect global concurrency limit %s (%s slots)", name, limit)
            return limit
        except ObjectAlreadyExists:
            existing = await client.read_global_concurrency_limit_by_name(name)
            return int(existing.limit)


async def ensure_limits(settings: Settings) -> LimitSizes:
    """Create the shared limits on first use; returns their sizes on the server."""
    size = await _ensure(settings.global_concurrency_limit_name, settings.global_concurrency_limit)
    sizes = LimitSizes(concurrency=size, rate=None)
    if settings.rate_limit_per_second:
        rate = settings.rate_limit_per_second
        burst = max(1, math.ceil(rate))
        await _ensure(settings.rate_limit_name, burst, decay=rate)
        sizes["rate"] = rate
    return sizes


def slot_lease(
    settings: Settings, slots: int, *, on_wait: Callable[[], Any] | None = None
) -> SlotLease:
    """A run's coarse hold on ``slots`` slots of the global limit (one Prefect acquisition)."""
    name = settings.global_concurrency_limit_name

    def acquire(n: int) -> Any:
        return concurrency(name, occupy=n, strict=True, lease_duration=300)

    return SlotLease(acquire, slots, on_wait=on_wait)


def rate_bucket(settings: Settings) -> TokenBucket | None:
    """The shared call rate, or None when no rate is configured."""
    rate = settings.rate_limit_per_second
    if not rate:
        return None
    name = settings.rate_limit_name
    block = max(1, math.ceil(rate))

    async def refill(n: int) -> None:
        await rate_limit(name, occupy=n, strict=True)

    return TokenBucket(rate, refill=refill, block=block)


def process_limiter(limit: int) -> ProcessLimiter:
    """This process's in-flight cap (one per size, shared by every run in the process)."""
    with _LOCK:
        limiter = _LIMITERS.get(limit)
        if limiter is None:
            limiter = _LIMITERS[limit] = ProcessLimiter(limit)
        return limiter
