"""Limits on LLM calls: the in-process cap, the call rate, and coarse Prefect slots."""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import asynccontextmanager

import pytest

from config.settings import get_settings
from extraction.llm.limits import ProcessLimiter, SlotLease, TokenBucket, combine, within


async def _busy(limiter: ProcessLimiter, seconds: float) -> None:
    async with limiter():
        await asyncio.sleep(seconds)


def test_process_limiter_caps_holders_across_threads_and_loops() -> None:
    limiter = ProcessLimiter(3)

    def worker() -> None:
        async def main() -> None:
            await asyncio.gather(*(_busy(limiter, 0.02) for _ in range(10)))

        asyncio.run(main())

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert limiter.max_in_use == 3
    assert limiter.acquired_total == 30 and limiter.in_use == 0


def test_a_cancelled_waiter_does_not_leak_its_slot() -> None:
    async def main() -> None:
        limiter = ProcessLimiter(1)
        holder = asyncio.create_task(_busy(limiter, 0.05))
        await asyncio.sleep(0.01)
        waiter = asyncio.create_task(_busy(limiter, 0.01))
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await holder
        assert limiter.in_use == 0
        await asyncio.wait_for(_busy(limiter, 0), 1)  # the slot is still usable

    asyncio.run(main())


def test_token_bucket_spaces_calls_and_refills_in_blocks() -> None:
    refills: list[int] = []

    async def refill(n: int) -> None:
        refills.append(n)

    async def main() -> float:
        bucket = TokenBucket(50, refill=refill, block=5)
        start = time.monotonic()
        await asyncio.gather(*(bucket.take() for _ in range(11)))
        return time.monotonic() - start

    elapsed = asyncio.run(main())
    assert elapsed >= 10 / 50 * 0.9  # 11 calls at 50/s: the last starts ~0.2 s in
    assert refills == [5, 5, 5]  # one shared-limit acquisition per 5 calls, not per call


def test_combine_waits_for_the_rate_then_a_slot() -> None:
    async def main() -> tuple[int, int]:
        limiter = ProcessLimiter(2)
        bucket = TokenBucket(1000)
        guarded = combine(limiter, bucket)
        async def one() -> None:
            async with guarded():
                await asyncio.sleep(0.01)
        await asyncio.gather(*(one() for _ in range(6)))
        return limiter.max_in_use, bucket.calls

    assert asyncio.run(main()) == (2, 6)


def test_within_caps_a_run_below_the_shared_process_limiter() -> None:
    process = ProcessLimiter(8)
    run_a, run_b = within(3, process), within(2, process)

    async def busy(limiter: object) -> None:
        async with limiter():  # type: ignore[operator]
            await asyncio.sleep(0.02)

    async def main() -> None:
        await asyncio.gather(*(busy(run_a) for _ in range(12)),
                             *(busy(run_b) for _ in range(12)))

    asyncio.run(main())
    assert run_a.cap.max_in_use == 3 and run_b.cap.max_in_use == 2  # type: ignore[attr-defined]
    assert process.max_in_use == 5 and process.in_use == 0


def test_slot_lease_acquires_once_for_overlapping_users_and_releases_when_idle() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def acquire(n: int):  # type: ignore[no-untyped-def]
        events.append(f"acquire {n}")
        yield
        events.append("release")

    async def user(lease: SlotLease, delay: float) -> None:
        async with lease:
            await asyncio.sleep(delay)

    async def main() -> None:
        lease = SlotLease(acquire, 4, linger=0.05)
        await asyncio.gather(user(lease, 0.05), user(lease, 0.1), user(lease, 0.02))
        await asyncio.sleep(0.01)
        async with lease:  # back-to-back within the linger time: same acquisition
            pass
        await asyncio.sleep(0.15)
        assert events == ["acquire 4", "release"]
        async with lease:  # after an idle period: a new acquisition
            pass
        await lease.close()
        assert events == ["acquire 4", "release", "acquire 4", "release"]

    asyncio.run(main())


def test_slot_lease_reports_waiting_and_propagates_errors() -> None:
    gate = asyncio.Event
    notices: list[str] = []

    async def main() -> None:
        opened = gate()

        @asynccontextmanager
        async def slow(n: int):  # type: ignore[no-untyped-def]
            await opened.wait()
            yield

        lease = SlotLease(slow, 2, wait_notice=0.02, on_wait=lambda: notices.append("waiting"))

        async def open_later() -> None:
            await asyncio.sleep(0.05)
            opened.set()

        asyncio.get_running_loop().create_task(open_later())
        async with lease:
            pass
        await lease.close()

        @asynccontextmanager
        async def broken(n: int):  # type: ignore[no-untyped-def]
            raise RuntimeError("limit missing")
            yield

        with pytest.raises(RuntimeError, match="limit missing"):
            async with SlotLease(broken, 1):
                pass

    asyncio.run(main())
    assert notices == ["waiting"]


def test_prefect_limits_are_created_on_first_use_and_bound_two_runs(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs asking 3 slots each of a 4-slot limit: the second waits for the first."""
    from prefect.client.orchestration import get_client

    from flows._limits import ensure_limits, rate_bucket, slot_lease

    name = f"xf-test-{time.monotonic_ns()}"
    monkeypatch.setenv("EXTRACTFLOW_GLOBAL_CONCURRENCY_LIMIT_NAME", name)
    monkeypatch.setenv("EXTRACTFLOW_GLOBAL_CONCURRENCY_LIMIT", "4")
    monkeypatch.setenv("EXTRACTFLOW_RATE_LIMIT_NAME", name + "-rate")
    monkeypatch.setenv("EXTRACTFLOW_RATE_LIMIT_PER_SECOND", "20")
    settings = get_settings()

    async def main() -> tuple[list[tuple[str, float]], dict, int]:
        sizes = await ensure_limits(settings)
        again = await ensure_limits(settings)  # exists now: read, not created twice
        assert sizes == again
        async with get_client() as client:
            limit = await client.read_global_concurrency_limit_by_name(name)
            rate = await client.read_global_concurrency_limit_by_name(name + "-rate")
        assert limit.limit == 4 and rate.slot_decay_per_second == 20
        timeline: list[tuple[str, float]] = []
        start = time.monotonic()

        async def run(label: str) -> None:
            lease = slot_lease(settings, 3)
            async with lease:
                timeline.append((f"{label} in", time.monotonic() - start))
                await asyncio.sleep(0.5)
            await lease.close()
            timeline.append((f"{label} out", time.monotonic() - start))

        await asyncio.gather(run("a"), run("b"))
        bucket = rate_bucket(settings)
        assert bucket is not None
        await asyncio.gather(*(bucket.take() for _ in range(5)))
        return timeline, sizes, bucket.calls

    timeline, sizes, calls = asyncio.run(main())
    assert sizes["concurrency"] == 4 and calls == 5
    moments = dict(timeline)
    first, second = sorted(["a", "b"], key=lambda k: moments[f"{k} in"])
    # 3 + 3 > 4: the second run only gets its slots after the first gave them back.
    assert moments[f"{second} in"] >= moments[f"{first} out"] - 0.05


def test_slots_of_a_dead_holder_are_reclaimed_and_a_live_one_is_named(
    prefect_harness: None, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim whose process is gone is released before waiting; a live holder is named."""
    import os
    import subprocess
    import sys
    import uuid

    from prefect.client.orchestration import get_client

    from extraction import db
    from extraction.llm import slot_claims
    from extraction.llm.limits import SlotWaitStopped
    from extraction.models import ProcessingLog
    from flows._limits import ensure_limits, held_slots
    from testing.run_factory import add_trial_documents, make_project

    monkeypatch.setenv("EXTRACTFLOW_GLOBAL_CONCURRENCY_LIMIT_NAME", f"xf-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("EXTRACTFLOW_GLOBAL_CONCURRENCY_LIMIT", "2")
    settings = get_settings()
    from extraction.run.plan import create_run_job

    with db.session_scope(db_url) as s:
        add_trial_documents(s, make_project(s), 1)
    with db.session_scope(db_url) as s:
        dead_job, live_job, waiter = (create_run_job(s, settings, kind="FULL",
                                                     project="trials").id for _ in range(3))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()

    async def take(job: uuid.UUID, pid: int) -> None:
        async with get_client() as client:
            response = await client.increment_concurrency_slots_with_lease(
                names=[settings.global_concurrency_limit_name], slots=2, mode="concurrency",
                lease_duration=60)
        with db.session_scope(db_url) as s:
            slot_claims.record_taken(s, job, lease_id=response.json()["lease_id"],
                                     limit=settings.global_concurrency_limit_name, slots=2)
            entry = s.query(ProcessingLog).filter_by(job_id=job).one()
            entry.details = {**entry.details, "pid": pid, "started": None}

    notices: list[str] = []

    async def main() -> float:
        await ensure_limits(settings)
        await take(dead_job, gone.pid)  # held by a process that has exited
        start = time.monotonic()
        async with held_slots(settings, 2, job_id=waiter, on_wait=notices.append):
            took = time.monotonic() - start
        await take(live_job, os.getpid())  # held by a live process (this one)
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(1.5, stop.set)
        with pytest.raises(SlotWaitStopped):
            async with held_slots(settings, 2, job_id=waiter, stop=stop, on_wait=notices.append):
                pass
        return took

    took = asyncio.run(main())
    assert took < 2.0
    assert len(notices) == 1  # only the live holder made it wait
    assert f"job {str(live_job)[:8]} holds 2 since" in notices[0]
    assert f"pid {os.getpid()}" in notices[0] and "2 of 2 slots in use" in notices[0]
    with db.session_scope(db_url) as s:
        returned = s.query(ProcessingLog).filter_by(job_id=dead_job,
                                                    event=slot_claims.RETURNED).one()
        assert f"reclaimed by job {str(waiter)[:8]}" in returned.message
