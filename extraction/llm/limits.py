"""Limits on LLM calls: in-flight calls per process, a call rate, and coarse shared slots.

Design (why three pieces)
-------------------------
The provider's quota is shared by every run and every worker, so it must be enforced by
something they all see: a Prefect global concurrency limit (``settings.global_concurrency_limit``
slots, named ``settings.global_concurrency_limit_name``) and, optionally, a Prefect rate limit
(``settings.rate_limit_per_second``). Both are created on first use by the flow layer
(``flows/_limits.py``); this module holds the Prefect-free machinery.

Taking a Prefect slot costs a round trip to the Prefect API, and under contention Prefect's
client polls coarsely, so one slot per LLM call would cap throughput far below C/L (the
figures are in ``benchmarks/``). Instead:

* :class:`SlotLease` — a run takes ``C`` slots of the global limit ONCE (``C`` =
  ``settings.llm_concurrency``, capped by the limit's size) when its first chunk starts, shares
  them between its overlapping chunks, and gives them back as soon as no chunk is active (end
  of the extract stage, a cancel). A run that dies holding them is found by the next run
  that waits (its owner is recorded; see ``extraction/llm/slot_claims.py``), which releases
  them before it waits. ``sum(C)`` over the
  runs holding slots is therefore ≤ the global limit: two runs or two workers never exceed the
  quota together. A run that cannot get its slots waits (and says so in its log) until
  another run finishes; set ``global_concurrency_limit`` ≥ the sum of the ``llm_concurrency``
  of the workers that should run side by side.
* :class:`ProcessLimiter` — caps the calls actually in flight in this process at ``C``
  (across threads and event loops). Each run's calls are also capped at the slots it holds
  (:func:`within`), which are fewer than ``C`` when the global limit is smaller, so a run
  never has more calls in flight than it holds slots.
  The LLM client enters it around EACH HTTP attempt (not around backoff sleeps), so a call
  waiting to retry does not hold a slot.
* :class:`TokenBucket` — an optional call rate. Tokens are fetched from a shared source in
  blocks (one Prefect ``rate_limit`` acquisition per block, not per call) and spent locally,
  evenly spaced; without a shared source it paces the process on its own.

The in-process pieces cost microseconds per call, so a chunk's async calls run at the
in-process limit with no round trip to the Prefect API.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Self

__all__ = ["CallsStopped", "ProcessLimiter", "SlotLease", "SlotWaitStopped", "TokenBucket",
           "combine", "within"]


class CallsStopped(Exception):
    """No new LLM call may start: the process was interrupted (Ctrl-C, SIGTERM)."""


class SlotWaitStopped(Exception):
    """A run was stopped (cancelled, interrupted) while it waited for its shared slots."""


class ProcessLimiter:
    """At most ``limit`` holders at a time, across every thread and event loop of a process.

    ``asyncio.Semaphore`` is bound to one event loop; Prefect may run tasks in worker threads
    with their own loops, so this limiter keeps its count under a thread lock and wakes a
    waiter on the waiter's own loop. Waiters are served first come, first served. It also
    records the peak number of holders, which tests and benchmarks read.

    Use it as the LLM client's ``limiter``: ``limiter()`` returns an async context manager.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._lock = threading.Lock()
        self._in_use = 0
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()
        self.max_in_use = 0
        self.acquired_total = 0
        self._stopped = False

    @property
    def in_use(self) -> int:
        return self._in_use

    def __call__(self) -> AbstractAsyncContextManager[None]:
        return self.slot()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    def stop_new_calls(self) -> None:
        """From now on every ``acquire`` raises :class:`CallsStopped` (waiters too).

        An interrupt must stop new requests at once: the run's own cancellation check only
        comes round every ``cancel_poll_seconds``, and calls queued here (or the next call of
        a document in per_variable mode) would start in between. Calls in flight finish.
        """
        with self._lock:
            self._stopped = True
            waiters, self._waiters = list(self._waiters), deque()
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._refuse, future)

    def allow_calls(self) -> None:
        """Undo :meth:`stop_new_calls` (a process that goes on after an interrupt)."""
        with self._lock:
            self._stopped = False

    @staticmethod
    def _refuse(future: asyncio.Future[None]) -> None:
        if not future.done():
            future.set_exception(CallsStopped("the run was interrupted"))

    def _took(self) -> None:
        self.acquired_total += 1
        self.max_in_use = max(self.max_in_use, self._in_use)

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._stopped:
                raise CallsStopped("the run was interrupted")
            if self._in_use < self.limit and not self._waiters:
                self._in_use += 1
                self._took()
                return
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, future))
        try:
            await future
        except asyncio.CancelledError:
            with self._lock:
                try:
                    self._waiters.remove((loop, future))
                    owned = False
                except ValueError:  # the slot was already handed to us
                    owned = future.done() and not future.cancelled()
            if owned:
                self.release()
            raise

    def release(self) -> None:
        with self._lock:
            if self._waiters:
                # Hand the slot straight to the next waiter: the count does not change.
                loop, future = self._waiters.popleft()
                self._took()
            else:
                self._in_use -= 1
                return
        try:
            loop.call_soon_threadsafe(self._resolve, future)
        except RuntimeError:  # the waiter's loop is closed: pass the slot on
            self.release()

    def _resolve(self, future: asyncio.Future[None]) -> None:
        if future.done():  # cancelled while the slot was on its way: pass it on
            self.release()
        else:
            future.set_result(None)


class TokenBucket:
    """Calls at most ``rate`` per second, tokens drawn in blocks from a shared source.

    ``refill(n)`` must wait until ``n`` more calls are allowed by whatever is shared (a
    Prefect rate limit); without it the bucket only paces this process. Calls are spaced
    evenly (no bursts) so a process never fires a whole block at once.
    """

    def __init__(
        self,
        rate: float,
        *,
        refill: Callable[[int], Awaitable[None]] | None = None,
        block: int | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.block = max(1, block if block is not None else int(rate))
        self._refill = refill
        self._tokens = 0
        self._next_at = 0.0
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self.calls = 0

    def _get_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def take(self) -> None:
        """Wait for this call's turn."""
        async with self._get_lock():
            if self._refill is not None and self._tokens <= 0:
                await self._refill(self.block)
                self._tokens += self.block
            self._tokens -= 1
            now = time.monotonic()
            start = max(now, self._next_at)
            self._next_at = start + 1.0 / self.rate
            self.calls += 1
        if start > now:
            await asyncio.sleep(start - now)


def combine(
    limiter: Callable[[], AbstractAsyncContextManager[Any]],
    bucket: TokenBucket | None,
) -> Callable[[], AbstractAsyncContextManager[None]]:
    """One ``limiter()`` for the LLM client: wait for the rate first, then an in-flight slot."""
    if bucket is None:
        return limiter  # type: ignore[return-value]

    @asynccontextmanager
    async def guarded() -> AsyncIterator[None]:
        await bucket.take()
        async with limiter():
            yield

    return guarded


def within(cap: int, limiter: Callable[[], AbstractAsyncContextManager[Any]]
           ) -> Callable[[], AbstractAsyncContextManager[None]]:
    """``limiter()`` entered by at most ``cap`` callers of this wrapper at the same time.

    A run's calls must stay within the global slots it holds, which can be fewer than the
    process limiter's size (the limit on the server is smaller than ``llm_concurrency``, or
    several runs share the process). The run's own cap is taken first, so a call waiting
    for it does not hold a slot of the shared process limiter.
    """
    own = ProcessLimiter(cap)

    @asynccontextmanager
    async def guarded() -> AsyncIterator[None]:
        async with own(), limiter():
            yield

    guarded.cap = own  # type: ignore[attr-defined]  # its peak, for tests and benchmarks
    return guarded


class SlotLease:
    """Shared, reference-counted hold on ``slots`` slots of a global concurrency limit.

    ``acquire(n)`` returns the async context manager that takes ``n`` slots from the shared
    limit (Prefect's ``concurrency(name, occupy=n)`` in the flow layer); it is entered once,
    by a holder task, when the first user enters, and left when the last user leaves and no
    new one arrives within ``linger`` seconds (so back-to-back chunks keep the slots).
    ``on_wait`` is called if the slots are not granted within ``wait_notice`` seconds, so a
    run can log that it is queued behind others.

    One lease belongs to one run, in one event loop.
    """

    def __init__(
        self,
        acquire: Callable[[int], AbstractAsyncContextManager[Any]],
        slots: int,
        *,
        linger: float = 0.5,
        wait_notice: float = 2.0,
        on_wait: Callable[[], Any] | None = None,
    ) -> None:
        self._acquire = acquire
        self.slots = slots
        self.linger = linger
        self.wait_notice = wait_notice
        self.on_wait = on_wait
        self._users = 0
        self._holder: asyncio.Task[None] | None = None
        self._granted: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._closing = False
        self._wake = asyncio.Event()
        self.acquisitions = 0

    @property
    def held(self) -> bool:
        return self._granted is not None and self._granted.is_set() and self._holder is not None \
            and not self._holder.done()

    async def _hold(self, granted: asyncio.Event, idle: asyncio.Event) -> None:
        try:
            async with self._acquire(self.slots):
                self.acquisitions += 1
                granted.set()
                while True:
                    await idle.wait()
                    if not self._closing:  # linger, unless close() asks to give back now
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), self.linger)
                    if idle.is_set():
                        return
        except BaseException as exc:  # reported to the users waiting for the grant
            self._error = exc
            granted.set()
            if not isinstance(exc, Exception):
                raise

    async def _wait_granted(self, granted: asyncio.Event) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(granted.wait()), self.wait_notice)
        except TimeoutError:
            if self.on_wait is not None:
                result = self.on_wait()
                if asyncio.iscoroutine(result):
                    await result
            await granted.wait()

    async def __aenter__(self) -> Self:
        self._users += 1
        if self._holder is None or self._holder.done():
            self._error = None
            self._granted, self._idle = asyncio.Event(), asyncio.Event()
            self._holder = asyncio.create_task(self._hold(self._granted, self._idle))
        assert self._granted is not None and self._idle is not None
        self._idle.clear()
        try:
            await self._wait_granted(self._granted)
        except BaseException:
            await self._leave()
            raise
        if self._error is not None:
            error = self._error
            await self._leave()
            raise error
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._leave()

    async def _leave(self) -> None:
        self._users -= 1
        if self._users == 0 and self._idle is not None:
            self._idle.set()

    async def close(self) -> None:
        """Give the slots back now (end of the run), waiting for the holder to exit."""
        holder = self._holder
        if holder is None:
            return
        self._closing = True
        self._wake.set()
        if self._idle is not None:
            self._idle.set()
        if not holder.done():
            if self._granted is not None and not self._granted.is_set():
                holder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await holder
        self._holder = None
        self._closing = False
        self._wake = asyncio.Event()
