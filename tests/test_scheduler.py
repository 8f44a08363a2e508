"""When a resource is fetched next: interval with jitter, backoff, Retry-After."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.app import App
from bot.config import load_settings
from bot.model import FetchResult, Target, TargetKind
from bot.relay import ResourceState
from bot.scheduler import MAX_SLACK_S, Scheduler
from bot.store.base import StoredResource
from bot.testing import RecordingChat


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    built = await App.create(
        load_settings(data_dir=tmp_path / "data"), chats={"test": RecordingChat()}
    )
    yield built
    await built.aclose()


def scheduler(
    app: App, *, jitter: float, max_backoff_s: float = 3600.0, seed: int = 7
) -> Scheduler:
    return Scheduler(
        app.relay,
        app.clock,
        app.supervisor,
        jitter=jitter,
        max_backoff_s=max_backoff_s,
        rng=random.Random(seed),
    )


async def test_app_scheduler_uses_configured_jitter_and_backoff(tmp_path: Path) -> None:
    settings_ = load_settings(data_dir=tmp_path / "data", jitter=0.0, max_backoff_s=500.0)
    built = await App.create(settings_, chats={"test": RecordingChat()})
    try:
        assert built.scheduler.next_delay(60.0, 0, None) == 60.0
        assert built.scheduler.next_delay(60.0, 10, None) == 500.0
    finally:
        await built.aclose()


async def test_success_delay_is_interval_within_jitter_never_later(app: App) -> None:
    sched = scheduler(app, jitter=0.1)
    delays = [sched.next_delay(300.0, 0, None) for _ in range(500)]
    # A follow polled every 5 minutes is never polled later than that (new posts arrive
    # within one interval), and jitter really spreads the polls below it.
    assert all(270.0 <= d <= 300.0 for d in delays)
    assert min(delays) < 275.0 < 295.0 < max(delays)


async def test_no_jitter_gives_the_exact_interval(app: App) -> None:
    sched = scheduler(app, jitter=0.0)
    assert {sched.next_delay(300.0, 0, None) for _ in range(20)} == {300.0}


async def test_each_failure_doubles_the_delay_up_to_the_cap(app: App) -> None:
    sched = scheduler(app, jitter=0.0, max_backoff_s=1000.0)
    delays = [sched.next_delay(60.0, failures, None) for failures in range(7)]
    assert delays == [60.0, 120.0, 240.0, 480.0, 960.0, 1000.0, 1000.0]
    # Hours of failures do not overflow or grow past the cap.
    assert sched.next_delay(60.0, 10_000, None) == 1000.0


async def test_backoff_with_jitter_stays_near_the_cap(app: App) -> None:
    sched = scheduler(app, jitter=0.1, max_backoff_s=1000.0)
    delays = [sched.next_delay(60.0, 30, None) for _ in range(200)]
    assert all(900.0 <= d <= 1000.0 for d in delays)


async def test_interval_longer_than_the_cap_is_never_shortened(app: App) -> None:
    sched = scheduler(app, jitter=0.0, max_backoff_s=3600.0)
    assert sched.next_delay(7200.0, 0, None) == 7200.0
    assert sched.next_delay(7200.0, 3, None) == 7200.0


async def test_retry_after_longer_than_the_delay_wins(app: App) -> None:
    sched = scheduler(app, jitter=0.1)
    assert sched.next_delay(60.0, 0, 900.0) == 900.0
    assert sched.next_delay(60.0, 2, 900.0) == 900.0


async def test_short_retry_after_does_not_shorten_the_delay(app: App) -> None:
    sched = scheduler(app, jitter=0.0)
    assert sched.next_delay(300.0, 0, 5.0) == 300.0
    assert sched.next_delay(300.0, 1, 5.0) == 600.0


async def test_same_seed_gives_the_same_schedule(app: App) -> None:
    one = scheduler(app, jitter=0.2, seed=42)
    two = scheduler(app, jitter=0.2, seed=42)
    other = scheduler(app, jitter=0.2, seed=43)
    first = [one.next_delay(100.0, n % 3, None) for n in range(10)]
    assert first == [two.next_delay(100.0, n % 3, None) for n in range(10)]
    assert first != [other.next_delay(100.0, n % 3, None) for n in range(10)]


@settings(max_examples=300, deadline=None)
@given(
    interval=st.floats(min_value=1.0, max_value=86_400.0),
    failures=st.integers(min_value=0, max_value=16),
    retry_after=st.none() | st.floats(min_value=0.0, max_value=100_000.0),
    jitter=st.floats(min_value=0.0, max_value=0.5),
    cap=st.floats(min_value=1.0, max_value=86_400.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_delay_is_bounded(
    interval: float,
    failures: int,
    retry_after: float | None,
    jitter: float,
    cap: float,
    seed: int,
) -> None:
    # next_delay is pure arithmetic; relay/clock/supervisor are never touched by it.
    sched = Scheduler(
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        jitter=jitter,
        max_backoff_s=cap,
        rng=random.Random(seed),
    )
    delay = sched.next_delay(interval, failures, retry_after)
    # Doubled per failure, capped, but never below the resource's own interval.
    base = min(interval * 2**failures, max(cap, interval))
    low, high = base * (1 - jitter), base
    if retry_after is not None:
        assert delay >= retry_after
        low, high = max(low, retry_after), max(high, retry_after)
    assert low - 1e-9 <= delay <= high + 1e-9
    # Never sooner than the interval minus jitter, whatever happened.
    assert delay >= interval * (1 - jitter) - 1e-9


class _TimingRelay:
    """Stands in for the relay: records when each resource was polled."""

    def __init__(self) -> None:
        self.polled: dict[int, list[float]] = {}

    async def poll(self, state: ResourceState) -> FetchResult:
        self.polled.setdefault(state.id, []).append(time.monotonic())
        return FetchResult([], state.cursor, not_modified=True)


def _state(resource_id: int, interval_s: float) -> ResourceState:
    target = Target("feeds", TargetKind.ACCOUNT, f"https://f{resource_id}.example/feed.xml")
    return ResourceState.of(StoredResource(resource_id, target, None), (), interval_s)


async def test_polls_due_close_together_share_a_wake_and_never_come_early(app: App) -> None:
    relay = _TimingRelay()
    sched = Scheduler(relay, app.clock, app.supervisor, jitter=0.0)  # type: ignore[arg-type]
    # 20 s interval: up to 0.2 s of slack. Two polls due 30 ms apart within one slot
    # (slots are multiples of the slack, on the monotonic clock) start together.
    started = time.monotonic()
    boundary = math.ceil(started / 0.2) * 0.2
    sched.add(_state(1, 20.0), first_in=boundary + 0.01 - started)
    sched.add(_state(2, 20.0), first_in=boundary + 0.04 - started)
    running = asyncio.create_task(sched.run())
    try:
        async with asyncio.timeout(5):
            while len(relay.polled) < 2:
                await asyncio.sleep(0.01)
    finally:
        running.cancel()
    first, second = relay.polled[1][0], relay.polled[2][0]
    assert first >= boundary + 0.01  # never early
    assert second >= boundary + 0.04
    assert abs(second - first) < 0.02  # one wake, not two
    assert max(first, second) <= boundary + 0.2 + 0.5  # about the slack late, not more


async def test_poll_now_takes_no_slack(app: App) -> None:
    relay = _TimingRelay()
    sched = Scheduler(relay, app.clock, app.supervisor, jitter=0.0)  # type: ignore[arg-type]
    sched.add(_state(1, 3600.0), first_in=3600.0)  # an hour's interval: 0.25 s of slack
    running = asyncio.create_task(sched.run())
    try:
        # Ask just after a slot boundary: with slack the poll could not start before
        # the next one, 0.25 s later.
        boundary = math.ceil(time.monotonic() / MAX_SLACK_S) * MAX_SLACK_S
        await asyncio.sleep(boundary + 0.005 - time.monotonic())
        sched.poll_now(1)
        async with asyncio.timeout(5):
            while not relay.polled:
                await asyncio.sleep(0.005)
    finally:
        running.cancel()
    assert relay.polled[1][0] < boundary + MAX_SLACK_S
