"""The Prefect side of the LLM limits: create the shared limits, lease coarse slots, pace calls.

See ``extraction/llm/limits.py`` for the design. This module only talks to the Prefect API:

* :func:`ensure_limits` creates the global concurrency limit (and the rate limit, when a rate
  is configured) the first time any run needs them, with the sizes from settings. A limit
  that already exists is left as it is — the server is the source of truth, so an operator
  can resize it in the UI — and its real size is returned. Two workers racing to create it
  is fine (the loser reads the winner's).
* :func:`slot_lease` is a :class:`~extraction.llm.limits.SlotLease` over :func:`held_slots`:
  one acquisition per run, not per call.
* :func:`held_slots` takes the slots with a Prefect lease and keeps the lease alive; when the
  limit is full it first reclaims the slots of runs that are gone, then waits, saying who
  holds the slots, and stops waiting at once when the run is cancelled.
* :func:`rate_bucket` draws call tokens from Prefect's ``rate_limit`` in blocks.
* :func:`process_limiter` is this process's in-flight cap, shared by every run in it.

Why not Prefect's own ``concurrency()`` context manager: a killed run's slots stay taken. Its
lease lapses after ``lease_duration``, but lapsed leases are only revoked by the server's
*repossessor* service, which an ephemeral server (the embedded mode: a server that lives only
while a command runs) never starts; and the ephemeral server keeps leases in memory, so the
next command's server does not even know them. Its waiting is also opaque (a background
service thread that polls on the server's ``Retry-After``, up to 30 s, and prints tracebacks
when the interpreter exits under it). Here the slots are taken with the same lease API, but

* every claim is recorded in the job log with its owner (:mod:`extraction.llm.slot_claims`),
  so a waiting run can name the holders and release at once the lease of a dead owner;
* in the embedded mode leases are kept in files (``flows/_server.py`` selects Prefect's
  filesystem lease storage), so a later command's server can release them, and lapsed ones
  are released here, before waiting (what the repossessor would do);
* waiting polls at most every ``slot_poll_seconds`` and wakes on the run's stop event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.asyncio import rate_limit
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from config.settings import Settings
from extraction.db import session_scope
from extraction.errors import ConfigError
from extraction.llm import slot_claims
from extraction.llm.limits import ProcessLimiter, SlotLease, SlotWaitStopped, TokenBucket

__all__ = [
    "LimitSizes",
    "ensure_limits",
    "held_slots",
    "process_limiter",
    "rate_bucket",
    "reclaim_dead_slots",
    "slot_lease",
    "stop_new_calls",
]

logger = logging.getLogger(__name__)
_LIMITERS: dict[int, ProcessLimiter] = {}
_LOCK = threading.Lock()
_FILE_LEASES = "prefect.server.concurrency.lease_storage.filesystem"
#: Set by an interrupt (Ctrl-C, SIGTERM): runs of this process stop waiting for slots.
_INTERRUPTED = threading.Event()


def stop_new_calls() -> None:
    """An interrupt: no new LLM call starts in this process and no run waits for slots."""
    _INTERRUPTED.set()
    with _LOCK:
        limiters = list(_LIMITERS.values())
    for limiter in limiters:
        limiter.stop_new_calls()


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


# ---------------------------------------------------------------- reclaiming dead runs' slots


def _claims(limit: str) -> list[slot_claims.Claim]:
    with session_scope() as session:
        return slot_claims.open_claims(session, limit)


def _returned(job_id: uuid.UUID, lease_id: str, name: str, slots: int, by: str | None) -> None:
    with session_scope() as session:
        slot_claims.record_returned(session, job_id, lease_id=lease_id, limit=name,
                                    slots=slots, by=by)


def _embedded() -> bool:
    from prefect.settings import PREFECT_API_URL

    return not PREFECT_API_URL.value()


def _file_leases() -> Any | None:
    """Prefect's filesystem lease storage when this (embedded) process's servers use it."""
    from prefect.settings import get_current_settings

    if not _embedded() or get_current_settings().server.concurrency.lease_storage != _FILE_LEASES:
        return None
    from prefect.server.concurrency.lease_storage.filesystem import ConcurrencyLeaseStorage

    return ConcurrencyLeaseStorage()


class _Reclaimer:
    """Releases the slots of dead runs; one per waiting run (it remembers unexplained slots)."""

    def __init__(self, settings: Settings, job_id: uuid.UUID | None) -> None:
        self.settings = settings
        self.job = str(job_id)[:8] if job_id else None
        self._unexplained = 0

    async def __call__(self, client: Any) -> int:
        """Release what dead runs hold; returns the number of slots freed."""
        name = self.settings.global_concurrency_limit_name
        freed = 0
        for claim in await asyncio.to_thread(_claims, name):
            if not slot_claims.is_dead(claim, stale_after=self.settings.job_stale_seconds):
                continue
            await client.release_concurrency_slots_with_lease(uuid.UUID(claim.lease_id))
            await asyncio.to_thread(_returned, claim.job_id, claim.lease_id, name, claim.slots,
                                    self.job or "another run")
            logger.warning("reclaimed %s slots of '%s' from job %s (pid %s on %s is gone)",
                           claim.slots, name, claim.job_id, claim.pid, claim.host)
            freed += claim.slots
        storage = _file_leases()
        if storage is not None:
            freed += await self._lapsed(client, storage, name)
        return freed

    async def _lapsed(self, client: Any, storage: Any, name: str) -> int:
        """Embedded mode: what the server's repossessor would do, and slots with no lease."""
        freed = 0
        for lease_id in await storage.read_expired_lease_ids(limit=1000):
            lease = await storage.read_lease(lease_id)
            await client.release_concurrency_slots_with_lease(lease_id)
            freed += lease.metadata.slots if lease is not None and lease.metadata else 0
        # Slots counted by the limit but held by no lease at all were leaked by a run that
        # died under a server that kept its leases in memory (before leases were kept in
        # files). Only an excess seen on two passes in a row is released, so a lease being
        # created at the moment of the count is never taken for a leak.
        limit = await client.read_global_concurrency_limit_by_name(name)
        leased = 0
        for lease_id in await storage.read_active_lease_ids(limit=1000):
            lease = await storage.read_lease(lease_id)
            if lease is not None and limit.id in lease.resource_ids and lease.metadata:
                leased += lease.metadata.slots
        excess = max(0, int(limit.active_slots) - leased)
        leak, self._unexplained = min(excess, self._unexplained), excess
        if leak:
            await client.release_concurrency_slots(names=[name], slots=leak,
                                                   occupancy_seconds=0.0)
            logger.warning("released %s slots of '%s' held by no lease", leak, name)
            self._unexplained -= leak
            freed += leak
        return freed


async def reclaim_dead_slots(settings: Settings) -> int:
    """Release now the slots of dead runs (and, embedded, lapsed leases); returns how many."""
    reclaim = _Reclaimer(settings, None)
    async with get_client() as client:
        freed = await reclaim(client)
        if _file_leases() is not None:  # the no-lease check needs two passes
            await asyncio.sleep(0.5)
            freed += await reclaim(client)
        return freed


async def _holders(client: Any, settings: Settings) -> str:
    name = settings.global_concurrency_limit_name
    claims = await asyncio.to_thread(_claims, name)
    try:
        limit = await client.read_global_concurrency_limit_by_name(name)
        in_use, size = int(limit.active_slots), int(limit.limit)
    except Exception:  # noqa: BLE001 - the sentence is still useful without the counts
        in_use = size = None
    return slot_claims.describe_holders(claims, in_use=in_use, size=size)


# ---------------------------------------------------------------- taking the slots


def _stopped(stop: asyncio.Event | None) -> bool:
    return _INTERRUPTED.is_set() or (stop is not None and stop.is_set())


async def _wait(stop: asyncio.Event | None, seconds: float) -> None:
    """Sleep ``seconds``, waking within 0.2 s when the run is stopped or interrupted."""
    deadline = time.monotonic() + seconds
    while not _stopped(stop) and (left := deadline - time.monotonic()) > 0:
        if stop is None:
            await asyncio.sleep(min(left, 0.2))
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(left, 0.2))


def _retry_after(exc: httpx.HTTPStatusError, default: float) -> float:
    with contextlib.suppress(TypeError, ValueError):
        return float(exc.response.headers.get("Retry-After"))
    return default


async def _renew(client: Any, lease_id: uuid.UUID, duration: float) -> None:
    """Keep the lease alive (every 3/4 of its duration) until cancelled."""
    while True:
        await asyncio.sleep(duration * 0.75)
        try:
            await client.renew_concurrency_lease(lease_id=lease_id, lease_duration=duration)
        except Exception as exc:  # noqa: BLE001 - retried at the next tick; the lease may lapse
            logger.warning("could not renew the lease of the LLM slots: %s", exc)


@asynccontextmanager
async def held_slots(
    settings: Settings,
    slots: int,
    *,
    job_id: uuid.UUID | None = None,
    flow_run_id: str | None = None,
    stop: asyncio.Event | None = None,
    on_wait: Callable[[str], Any] | None = None,
) -> AsyncIterator[None]:
    """Hold ``slots`` slots of the global limit (a renewed Prefect lease) for the block.

    When the limit is full: release the slots of dead runs, and if that is not enough, call
    ``on_wait`` with who holds the slots, then try again every ``slot_poll_seconds`` (and
    reclaim again every ``slot_reclaim_seconds``). Raises :class:`SlotWaitStopped` as soon as
    ``stop`` is set while waiting.
    """
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder

    name = settings.global_concurrency_limit_name
    duration = settings.llm_slot_lease_seconds
    holder = ConcurrencyLeaseHolder(type="flow_run", id=uuid.UUID(flow_run_id)) \
        if flow_run_id else None
    reclaim = _Reclaimer(settings, job_id)
    async with get_client() as client:
        told = False
        last_reclaim = -math.inf
        while True:
            if _stopped(stop):
                raise SlotWaitStopped("the run was stopped while waiting for LLM slots")
            try:
                response = await _increment(client, name, slots, duration, holder, stop)
                break
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code != 423:
                    raise
                pause = min(_retry_after(exc, settings.slot_poll_seconds),
                            settings.slot_poll_seconds)
            now = time.monotonic()
            if now - last_reclaim >= settings.slot_reclaim_seconds:
                last_reclaim = now
                try:
                    if await reclaim(client):
                        continue  # try again at once: the slots may be free now
                except Exception as exc:  # noqa: BLE001 - waiting still works without it
                    logger.warning("could not check for slots of dead runs: %s", exc)
            if not told:
                told = True
                message = await _holders(client, settings)
                if on_wait is not None:
                    result = on_wait(message)
                    if asyncio.iscoroutine(result):
                        await result
            await _wait(stop, pause)
        body = response.json()
        if not body.get("limits"):
            raise ConfigError(f"the Prefect global concurrency limit '{name}' does not exist",
                              field="global_concurrency_limit_name")
        lease_id = uuid.UUID(body["lease_id"])
        renewal = asyncio.create_task(_renew(client, lease_id, duration))
        try:
            if job_id is not None:
                await asyncio.to_thread(_taken, job_id, str(lease_id), name, slots)
            yield
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal
            # Give the slots back even when the run is being cancelled: shielded, bounded.
            release = asyncio.ensure_future(_release(client, lease_id, job_id, name, slots))
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(release), 10)


#: Pauses before asking again when the server's database was busy (HTTP 503), in seconds.
_BUSY_PAUSES = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)


async def _increment(client: Any, name: str, slots: int, duration: float, holder: Any,
                     stop: asyncio.Event | None) -> httpx.Response:
    """Ask once for ``slots`` slots with a lease; a busy server is asked again after a short pause.

    Why not the Prefect client's own call: a Prefect server on SQLite answers 503 when its
    database is busy (a write of the run's own task-run states, just before the extract stage
    asks for slots, is enough), and the Prefect client then waits 2 s, 4 s, ... before the next
    try, a wait on the path to the run's first LLM call. A 503 leaves nothing behind (the slots
    are taken and the lease created in one transaction that failed), so asking again at once is
    as safe as Prefect's retry. Other errors, 423 (the limit is full) among them, are raised
    as the Prefect client raises them. With CSRF protection on, the Prefect client's call is
    used (it adds the token).
    """
    http = client._client
    if getattr(http, "enable_csrf_support", False):
        return await client.increment_concurrency_slots_with_lease(
            names=[name], slots=slots, mode="concurrency", lease_duration=duration,
            holder=holder)
    body: dict[str, Any] = {"names": [name], "slots": slots, "mode": "concurrency",
                            "lease_duration": duration}
    if holder is not None:
        body["holder"] = holder.model_dump(mode="json")
    for pause in (*_BUSY_PAUSES, None):
        request = http.build_request("POST", "/v2/concurrency_limits/increment-with-lease",
                                     json=body)
        # httpx's own send: one request, without the Prefect client's retry loop.
        response = await httpx.AsyncClient.send(http, request)
        if response.status_code != 503 or pause is None or _stopped(stop):
            break
        await _wait(stop, pause)
    response.raise_for_status()
    return response


def _taken(job_id: uuid.UUID, lease_id: str, name: str, slots: int) -> None:
    with session_scope() as session:
        slot_claims.record_taken(session, job_id, lease_id=lease_id, limit=name, slots=slots)


async def _release(client: Any, lease_id: uuid.UUID, job_id: uuid.UUID | None, name: str,
                   slots: int) -> None:
    try:
        await client.release_concurrency_slots_with_lease(lease_id)
    except Exception as exc:  # noqa: BLE001 - the lease lapses; a later run reclaims it
        logger.warning("could not give back the LLM slots (lease %s): %s", lease_id, exc)
        return
    if job_id is not None:
        await asyncio.to_thread(_returned, job_id, str(lease_id), name, slots, None)


def slot_lease(
    settings: Settings,
    slots: int,
    *,
    on_wait: Callable[..., Any] | None = None,
    job_id: uuid.UUID | None = None,
    flow_run_id: str | None = None,
    stop: asyncio.Event | None = None,
) -> SlotLease:
    """A run's coarse hold on ``slots`` slots of the global limit (one Prefect acquisition)."""

    def acquire(n: int) -> Any:
        return held_slots(settings, n, job_id=job_id, flow_run_id=flow_run_id, stop=stop,
                          on_wait=on_wait)

    return SlotLease(acquire, slots)


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
