"""Background tasks: a crash is logged and restarted, never silently lost."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.supervise import Supervisor


async def test_task_that_raises_is_restarted_until_it_succeeds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sup = Supervisor(max_backoff_s=0.05)
    runs = 0
    done = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError(f"crash {runs}")
        done.set()

    with caplog.at_level(logging.ERROR, logger="bot.supervise"):
        task = sup.supervise("flaky", flaky)
        # The first restart waits 1 s, the second is capped at max_backoff_s.
        await asyncio.wait_for(done.wait(), timeout=5)
        await asyncio.wait_for(task, timeout=1)

    assert runs == 3
    assert sup.restarts == {"flaky": 2}
    assert not task.cancelled()
    assert task.exception() is None
    died = [r for r in caplog.records if "flaky died" in r.getMessage()]
    assert len(died) == 2
    assert died[0].exc_info is not None
    assert "crash 1" in str(died[0].exc_info[1])


async def test_task_that_returns_is_not_restarted() -> None:
    sup = Supervisor(max_backoff_s=0.05)
    runs = 0

    async def once() -> None:
        nonlocal runs
        runs += 1

    await asyncio.wait_for(sup.supervise("once", once), timeout=1)
    await asyncio.sleep(0.05)
    assert runs == 1
    assert sup.restarts == {}


async def test_stop_cancels_every_task() -> None:
    sup = Supervisor()
    started = asyncio.Event()
    cancelled: list[str] = []

    async def forever(name: str) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(name)
            raise

    async def crashing() -> None:
        raise RuntimeError("boom")

    supervised = sup.supervise("loop", lambda: forever("loop"))
    one_off = sup.spawn(forever("one-off"), name="one-off")
    backing_off = sup.supervise("crashing", crashing)  # sits in its 1 s backoff
    await started.wait()
    await asyncio.sleep(0.01)

    await asyncio.wait_for(sup.stop(), timeout=1)

    assert sorted(cancelled) == ["loop", "one-off"]
    assert [t.cancelled() for t in (supervised, one_off, backing_off)] == [True, True, True]
    assert sup.restarts == {"crashing": 1}


async def test_failing_one_off_task_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    sup = Supervisor()

    async def job() -> None:
        raise ValueError("lost post 42")

    with caplog.at_level(logging.ERROR, logger="bot.supervise"):
        task = sup.spawn(job(), name="send-42")
        await asyncio.wait([task])
        await asyncio.sleep(0)  # done callbacks run on the next loop iteration

    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "send-42" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ValueError)
    assert "lost post 42" in str(record.exc_info[1])


async def test_successful_and_cancelled_one_off_tasks_log_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sup = Supervisor()

    async def fine() -> int:
        return 1

    with caplog.at_level(logging.ERROR, logger="bot.supervise"):
        ok = sup.spawn(fine(), name="fine")
        hanging = sup.spawn(asyncio.Event().wait(), name="hanging")
        await ok
        hanging.cancel()
        await asyncio.wait([hanging])
        await asyncio.sleep(0)

    assert ok.result() == 1
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_first_restart_respects_max_backoff() -> None:
    sup = Supervisor(max_backoff_s=0.05)
    runs = 0
    again = asyncio.Event()

    async def crash_once() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("crash")
        again.set()

    sup.supervise("crash-once", crash_once)
    try:
        await asyncio.wait_for(again.wait(), timeout=0.5)
    finally:
        await sup.stop()
