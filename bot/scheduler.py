"""When each resource is fetched next.

Per-resource interval with jitter, exponential backoff on failure, `Retry-After`
honoured. One fetch per resource however many channels follow it (the relay fans
out after the fetch).

Due times are rounded up to slots (timer slack, as operating systems coalesce
timers): a poll may wait up to `SLACK` of its interval, at most `MAX_SLACK_S`, so
that polls due close together start in one wake of the event loop; at the pace of
100,000 feeds every 5 minutes that halves the CPU the bot uses. Resources due in
the same slot wait in one list (a bucket) and a heap orders the slots, not the
resources: a list pointer per resource instead of a heap tuple (~120 B each at
100,000 feeds). A poll is never early; jitter only ever shortens an interval, so a
poll comes at most `interval` (+ its slack) after the previous one. `poll_now`
takes no slack.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import random
from collections.abc import Callable

from bot.clock import Clock
from bot.errors import UpstreamError
from bot.relay import Relay, ResourceState
from bot.supervise import Supervisor

log = logging.getLogger(__name__)

SLACK = 0.01
MAX_SLACK_S = 0.25


class Scheduler:
    def __init__(
        self,
        relay: Relay,
        clock: Clock,
        supervisor: Supervisor,
        *,
        jitter: float = 0.1,
        max_backoff_s: float = 3600.0,
        max_concurrent_polls: int = 400,
        rng: random.Random | None = None,
        backlog: Callable[[], int] = lambda: 0,
        max_backlog: int = 2000,
    ) -> None:
        self._relay = relay
        self._clock = clock
        self._supervisor = supervisor
        self._jitter = jitter
        self._max_backoff_s = max_backoff_s
        self._rng = rng or random.Random()
        self._buckets: dict[float, list[ResourceState]] = {}  # slot → resources due then
        self._slots: list[float] = []  # heap of the slots that have a bucket
        self.states: dict[int, ResourceState] = {}
        self._wake = asyncio.Event()
        self._polls = asyncio.Semaphore(max_concurrent_polls)
        # Backpressure: while this many admitted posts wait for their chat, new polls
        # wait too, so fetching never starves delivery (measured: it did, at full speed).
        self._backlog = backlog
        self._max_backlog = max_backlog
        # Long-lived poll workers fed by a queue: a task per poll cost ~9 µs more per
        # poll. The pool grows only when no worker is idle (up to the poll limit, which
        # the semaphore enforces), so an idle bot holds no workers.
        self._queue: asyncio.Queue[ResourceState] = asyncio.Queue()
        self._workers: set[asyncio.Task[None]] = set()
        self._idle = 0
        self._max_workers = max_concurrent_polls
        self.polls = 0
        self.failures = 0

    def add(self, state: ResourceState, *, first_in: float | None = None) -> None:
        """Schedule a resource; the first poll comes after `first_in` seconds (default: spread
        over one interval so a restart does not fetch everything at once)."""
        self.states[state.id] = state
        delay = self._rng.uniform(0, state.interval_s) if first_in is None else first_in
        self._push(state, self._clock.monotonic() + delay)

    def remove(self, resource_id: int) -> None:
        state = self.states.pop(resource_id, None)
        if state is not None:
            state.bucket = None

    def _push(self, state: ResourceState, due: float, *, slack: bool = True) -> None:
        """Queue `state` in the slot holding `due`; an entry it had elsewhere goes stale."""
        width = min(MAX_SLACK_S, state.interval_s * SLACK) if slack else 0.0
        slot = math.ceil(due / width) * width if width > 0 else due
        bucket = self._buckets.get(slot)
        if bucket is None:
            bucket = self._buckets[slot] = []
            heapq.heappush(self._slots, slot)
            if self._slots[0] == slot:
                self._wake.set()
        bucket.append(state)
        state.bucket = bucket

    async def run(self) -> None:
        while True:
            now = self._clock.monotonic()
            while self._slots and self._slots[0] <= now:
                bucket = self._buckets.pop(heapq.heappop(self._slots))
                for state in bucket:
                    if (
                        state.bucket is not bucket
                        or state.running
                        or self.states.get(state.id) is not state
                    ):
                        continue  # removed or rescheduled since it was queued here
                    state.bucket = None
                    while self._backlog() > self._max_backlog:  # noqa: ASYNC110 - short waits
                        await asyncio.sleep(0.01)
                    await self._polls.acquire()
                    state.running = True
                    self._queue.put_nowait(state)
                    if self._idle < self._queue.qsize() and len(self._workers) < self._max_workers:
                        task = self._supervisor.spawn(self._worker(), name="poll-worker")
                        self._workers.add(task)
                        task.add_done_callback(self._workers.discard)
            self._wake.clear()
            delay = self._slots[0] - self._clock.monotonic() if self._slots else 3600.0
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)

    async def _worker(self) -> None:
        while True:
            self._idle += 1
            try:
                state = await self._queue.get()
            finally:
                self._idle -= 1
            try:
                await self._poll(state)
            except Exception:  # a bug in one poll must not cost the pool a worker
                log.exception("poll of %s failed", state.target.key)
            finally:
                self._queue.task_done()

    async def _poll(self, state: ResourceState) -> None:
        try:
            if self.states.get(state.id) is not state:
                return  # removed while it waited for a slot
            self.polls += 1
            retry_after: float | None = None
            try:
                result = await self._relay.poll(state)
                state.failures = 0
                retry_after = result.retry_after_s
            except UpstreamError as err:
                self.failures += 1
                state.failures += 1
                retry_after = err.retry_after_s
                log.debug("poll of %s failed: %s", state.target.key, err)
            delay = self.next_delay(state.interval_s, state.failures, retry_after)
            if self.states.get(state.id) is state:
                self._push(state, self._clock.monotonic() + delay)
        finally:
            state.running = False
            self._polls.release()

    def next_delay(self, interval_s: float, failures: int, retry_after_s: float | None) -> float:
        """Interval minus up to `jitter` of it; doubled per consecutive failure up to the
        cap; never before the upstream's `Retry-After`.

        Jitter only shortens: a follow polled "every 5 minutes" is never polled later
        than that, so a new post arrives within one interval (plus the fetch).
        """
        base = interval_s * (2 ** min(failures, 16)) if failures else interval_s
        base = min(base, max(self._max_backoff_s, interval_s))
        delay = base * (1 - self._rng.uniform(0, self._jitter))
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return delay

    def poll_now(self, resource_id: int) -> None:
        """Fetch a resource at the next opportunity (used right after a change)."""
        state = self.states.get(resource_id)
        if state is not None:
            self._push(state, self._clock.monotonic(), slack=False)

    async def quiesce(self) -> None:
        """Wait for polls in flight, so shutdown flushes what they admitted."""
        await self._queue.join()
