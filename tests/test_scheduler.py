"""When a resource is fetched next: interval with jitter, backoff, Retry-After."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.app import App
from bot.config import load_settings
from bot.scheduler import Scheduler
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


async def test_success_delay_is_interval_within_jitter(app: App) -> None:
    sched = scheduler(app, jitter=0.1)
    delays = [sched.next_delay(300.0, 0, None) for _ in range(500)]
    assert all(270.0 <= d <= 330.0 for d in delays)
    # Jitter really spreads the polls: not all at one instant, and both sides of 300.
    assert min(delays) < 285.0 < 315.0 < max(delays)


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
    assert all(900.0 <= d <= 1100.0 for d in delays)


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
    low, high = base * (1 - jitter), base * (1 + jitter)
    if retry_after is not None:
        assert delay >= retry_after
        low, high = max(low, retry_after), max(high, retry_after)
    assert low - 1e-9 <= delay <= high + 1e-9
    # Never sooner than the interval minus jitter, whatever happened.
    assert delay >= interval * (1 - jitter) - 1e-9
