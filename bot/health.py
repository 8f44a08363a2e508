"""The health record: every upstream request outcome, per network and host.

Recording is in memory (the polling hot path must not write to the database per
request); `flush` folds the counts into per-minute rows in the store, which the
outage work reads for error rates and timelines.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

from bot.clock import Clock
from bot.errors import Outcome
from bot.store.base import HealthDay, HealthHost, HealthMinute, Store

MINUTES_PER_DAY = 24 * 60


class _HostHolder(Protocol):
    host: str


# Set by the relay around each poll: every outcome a plugin records while fetching
# tells that resource which host it lives on, for the outage work to count follows.
polling: ContextVar[_HostHolder | None] = ContextVar("polling", default=None)

# (network, host, outcome, detail, latency_s): told of every request outcome.
OutcomeListener = Callable[[str, str, Outcome, str, float], None]


@dataclass(slots=True)
class HostHealth:
    network: str
    host: str
    last_outcome: Outcome = Outcome.OK
    last_status: int | None = None
    last_detail: str = ""
    last_ok_at: float | None = None
    last_failure_at: float | None = None
    consecutive_failures: int = 0
    counts: dict[Outcome, int] = field(default_factory=lambda: defaultdict(int))


class HealthBook:
    """Implements `bot.protocols.HealthRecorder`; one per app, handed to every plugin."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.listeners: list[OutcomeListener] = []
        self.hosts: dict[tuple[str, str], HostHealth] = {}
        self._pending: dict[tuple[str, str, int, Outcome], list[float]] = {}
        self._dirty: set[tuple[str, str]] = set()
        # (network, host) → the unit a poll's resource is linked to: the host itself, or
        # the pool it belongs to (set by the app from `OutageWatch.unit_of`).
        self.unit_of: Callable[[str, str], str] = lambda network, host: host

    def record(
        self,
        network: str,
        host: str,
        outcome: Outcome,
        *,
        latency_s: float = 0.0,
        status: int | None = None,
        detail: str = "",
    ) -> None:
        now = self._clock.now().timestamp()
        key = (network, host)
        entry = self.hosts.get(key)
        if entry is None:
            entry = self.hosts[key] = HostHealth(network, host)
        entry.last_outcome = outcome
        entry.last_status = status
        entry.last_detail = detail
        entry.counts[outcome] += 1
        if outcome.is_failure:
            entry.last_failure_at = now
            entry.consecutive_failures += 1
        else:
            entry.last_ok_at = now
            entry.consecutive_failures = 0
        bucket = self._pending.get((network, host, int(now // 60), outcome))
        if bucket is None:
            self._pending[(network, host, int(now // 60), outcome)] = [1.0, latency_s]
        else:
            bucket[0] += 1
            bucket[1] += latency_s
        self._dirty.add(key)
        holder = polling.get()
        if holder is not None:
            unit = self.unit_of(network, host)
            if holder.host != unit:
                holder.host = unit
        for listener in self.listeners:
            listener(network, host, outcome, detail, latency_s)

    async def load(self, store: Store) -> None:
        """Restore last-known state so `/status` after a restart still says what failed."""
        for row in await store.load_health_hosts():
            self.hosts[(row.network, row.host)] = HostHealth(
                row.network,
                row.host,
                Outcome(row.last_outcome),
                row.last_status,
                row.last_detail,
                row.last_ok_at,
                row.last_failure_at,
                row.consecutive_failures,
            )

    async def flush(self, store: Store) -> None:
        if not self._pending and not self._dirty:
            return
        pending, self._pending = self._pending, {}
        dirty, self._dirty = self._dirty, set()
        minutes = [
            HealthMinute(net, host, minute, outcome.value, int(v[0]), v[1])
            for (net, host, minute, outcome), v in pending.items()
        ]
        per_day: dict[tuple[str, int, str], list[float]] = {}
        for row in minutes:
            day = per_day.setdefault(
                (row.network, row.minute // MINUTES_PER_DAY, row.outcome), [0, 0]
            )
            day[0] += row.count
            day[1] += row.latency_sum
        hosts = [
            HealthHost(
                h.network,
                h.host,
                h.last_outcome.value,
                h.last_status,
                h.last_detail,
                h.last_ok_at,
                h.last_failure_at,
                h.consecutive_failures,
            )
            for h in (self.hosts[k] for k in dirty)
        ]
        days = [
            HealthDay(net, day, outcome, int(v[0]), v[1])
            for (net, day, outcome), v in per_day.items()
        ]
        await store.save_health(minutes, hosts, days)

    def by_network(self) -> dict[str, list[HostHealth]]:
        grouped: dict[str, list[HostHealth]] = defaultdict(list)
        for (network, _host), entry in sorted(self.hosts.items()):
            grouped[network].append(entry)
        return dict(grouped)
