"""Upstream outages: detect them per network and host, announce them where they hurt.

Each (network, host) has a state — up → degraded → down → recovering → up —
computed from Starling's own request outcomes with hysteresis: one failed request
is not an outage; `failures_to_down` outage-signalling failures in a row, or an
error rate over `down_rate` within the window, is. Only state changes speak: one
announcement per affected channel when a host goes down, edited in place while it
lasts and when it resolves. Open outages and their messages are stored, so a
restart neither repeats nor forgets them.

Some hosts back each other up (a network's several nostr relays, several
Jetstream hosts): a plugin declares them as a pool, and the pool is the unit
announced. One member down is the pool degraded, which no follow notices; every
member down is the pool down, announced to the follows linked to the pool.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC

from bot.clock import Clock
from bot.errors import Outcome
from bot.model import ChannelRef, RichMessage
from bot.protocols import Chat
from bot.store.base import Store
from bot.timefmt import duration, hhmm

log = logging.getLogger(__name__)


class HostState(enum.StrEnum):
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"
    RECOVERING = "recovering"


@dataclass(frozen=True, slots=True)
class OutageRules:
    failures_to_down: int = 3
    window_s: float = 300.0
    degraded_rate: float = 0.2
    down_rate: float = 0.5
    min_requests: int = 6
    successes_to_up: int = 2


@dataclass(slots=True)
class HostTracker:
    network: str
    host: str
    state: HostState = HostState.UP
    events: deque[tuple[float, bool]] = field(default_factory=lambda: deque(maxlen=256))
    failures_in_row: int = 0
    successes_in_row: int = 0
    failing_since: float | None = None
    last_ok: float | None = None
    last_outcome: Outcome = Outcome.OK
    last_detail: str = ""

    def error_rate(self, now: float, rules: OutageRules) -> tuple[float, int]:
        recent = [failed for at, failed in self.events if at >= now - rules.window_s]
        if not recent:
            return 0.0, 0
        return sum(recent) / len(recent), len(recent)

    def observe(
        self, now: float, outcome: Outcome, detail: str, rules: OutageRules
    ) -> HostState | None:
        """Fold one outcome in; return the new state when it changed."""
        if outcome.is_failure and not outcome.is_outage_signal:
            return None  # about one resource (404, parse error), not about the service
        failed = outcome.is_failure
        self.events.append((now, failed))
        if failed:
            self.failures_in_row += 1
            self.successes_in_row = 0
            if self.failing_since is None:
                self.failing_since = now
            self.last_outcome, self.last_detail = outcome, detail
        else:
            self.successes_in_row += 1
            self.failures_in_row = 0
            self.last_ok = now
        before = self.state
        self.state = self._next(now, failed, rules)
        if not failed and self.state in (HostState.UP, HostState.DEGRADED):
            self.failing_since = None  # the failure streak is over (not merely unconfirmed)
        return self.state if self.state is not before else None

    def _next(self, now: float, failed: bool, rules: OutageRules) -> HostState:
        rate, count = self.error_rate(now, rules)
        enough = count >= rules.min_requests
        is_down = self.failures_in_row >= rules.failures_to_down or (
            enough and rate >= rules.down_rate
        )
        if self.state in (HostState.UP, HostState.DEGRADED):
            if failed and is_down:
                return HostState.DOWN
            if enough and rate >= rules.degraded_rate:
                return HostState.DEGRADED
            return HostState.UP
        if self.state is HostState.DOWN:
            if failed:
                return HostState.DOWN
            return (
                HostState.UP
                if self.successes_in_row >= rules.successes_to_up
                else HostState.RECOVERING
            )
        # RECOVERING
        if failed:
            return HostState.DOWN
        return HostState.UP if self.successes_in_row >= rules.successes_to_up else self.state


@dataclass(frozen=True, slots=True)
class HostPool:
    """Hosts that serve the same follows, so only all of them down is an outage."""

    network: str
    name: str  # the unit announced, stored in place of a host: e.g. "all relays"
    hosts: frozenset[str]


def pool_state(states: list[HostState]) -> HostState:
    """A pool serves while any member does: down only when every member is down."""
    if all(s is HostState.DOWN for s in states):
        return HostState.DOWN
    serving = [s for s in states if s in (HostState.UP, HostState.DEGRADED)]
    if not serving:
        return HostState.RECOVERING
    return HostState.UP if all(s is HostState.UP for s in states) else HostState.DEGRADED


@dataclass(slots=True)
class Notice:
    channel: ChannelRef
    message_ref: str
    affected: int


@dataclass(slots=True)
class OpenOutage:
    id: int
    network: str
    host: str
    started_at: float
    detail: str
    notices: dict[int, Notice] = field(default_factory=dict)
    admitted_at_start: int = 0
    recovering: bool = False


Affected = Callable[[str, str], Mapping[int, tuple[ChannelRef, int]]]
Admitted = Callable[[str, str], int]
Official = Callable[[str], str | None]  # a network's status page, in its own words


def _verb(outcome: Outcome, plural: bool = False) -> str:
    be = "are" if plural else "is"
    if outcome is Outcome.RATE_LIMITED:
        return f"{be} rate-limiting Starling"
    if outcome is Outcome.AUTH:
        return f"{be} rejecting Starling's credentials"
    return f"{be} not answering"


class OutageWatch:
    """Turns host state changes into channel announcements, edited in place."""

    def __init__(
        self,
        store: Store,
        chats: Mapping[str, Chat],
        clock: Clock,
        *,
        rules: OutageRules,
        affected: Affected,
        admitted: Admitted,
        announce: bool = True,
        quiet_channels: frozenset[str] = frozenset(),
        quiet_hours: tuple[int, int] | None = None,
        update_every_s: float = 600.0,
        official: Official | None = None,
    ) -> None:
        self._store = store
        self._chats = chats
        self._clock = clock
        self.rules = rules
        self._affected = affected
        self._admitted = admitted
        self._announce = announce
        self._quiet = quiet_channels
        self._quiet_hours = quiet_hours  # minutes of the UTC day: (start, end)
        self._update_every_s = update_every_s
        self._official = official
        self.trackers: dict[tuple[str, str], HostTracker] = {}
        self.open: dict[tuple[str, str], OpenOutage] = {}
        self._changes: asyncio.Queue[tuple[str, str, HostState]] = asyncio.Queue()
        self._busy = asyncio.Lock()  # one change handled at a time, in order
        self.pools: dict[tuple[str, str], HostPool] = {}  # by (network, pool name)
        self._member_of: dict[tuple[str, str], HostPool] = {}  # by (network, member host)

    def add_pool(self, network: str, name: str, hosts: list[str]) -> HostPool:
        """Declare hosts that back each other up; their pool is what gets announced."""
        pool = HostPool(network, name, frozenset(hosts))
        self.pools[(network, name)] = pool
        for host in hosts:
            self._member_of[(network, host)] = pool
        return pool

    def unit_of(self, network: str, host: str) -> str:
        """The host or pool an outcome on `host` counts toward."""
        pool = self._member_of.get((network, host)) if self._member_of else None
        return pool.name if pool is not None else host

    def is_down(self, network: str) -> bool:
        """Down while any unit is: a plain host, or a whole pool (not one pool member)."""
        return any(
            t.state is HostState.DOWN
            for (net, host), t in self.trackers.items()
            if net == network and (net, host) not in self._member_of
        )

    # --- detection (synchronous: called from the health book on every outcome) ------

    def observe(
        self, network: str, host: str, outcome: Outcome, detail: str, latency_s: float = 0.0
    ) -> None:
        if outcome is Outcome.RATE_LIMITED and network.startswith("chat:"):
            # Chat libraries wait out per-route 429s themselves; only failed deliveries
            # (recorded by the dispatcher with their own outcome) say a platform is down.
            return
        key = (network, host)
        tracker = self.trackers.get(key)
        if tracker is None:
            if not outcome.is_outage_signal:
                return  # healthy hosts need no tracker; keeps 100k feeds cheap
            tracker = self.trackers[key] = HostTracker(network, host)
        changed = tracker.observe(self._clock.now().timestamp(), outcome, detail, self.rules)
        pool = self._member_of.get(key) if self._member_of else None
        if changed is not None:
            if pool is None:
                self._changes.put_nowait((network, host, changed))
            else:
                self._observe_pool(pool)
        elif tracker.state is HostState.UP and not any(failed for _, failed in tracker.events):
            del self.trackers[key]  # healthy again for a whole window: stop tracking

    def _observe_pool(self, pool: HostPool) -> None:
        """A member changed state: recompute the pool's, and queue it when it changed."""
        members = [self.trackers.get((pool.network, host)) for host in sorted(pool.hosts)]
        state = pool_state([m.state if m else HostState.UP for m in members])
        key = (pool.network, pool.name)
        tracker = self.trackers.get(key)
        if tracker is None:
            if state is HostState.UP:
                return
            tracker = self.trackers[key] = HostTracker(pool.network, pool.name)
        if state is tracker.state:
            return
        failing = [m for m in members if m is not None and m.state is not HostState.UP]
        if state is HostState.DOWN and failing:
            latest = max(failing, key=lambda m: m.failing_since or 0.0)
            tracker.failing_since = tracker.failing_since or latest.failing_since
            tracker.last_outcome = latest.last_outcome
            tracker.last_detail = "; ".join(
                f"{m.host}: {m.last_detail or m.last_outcome.value}" for m in failing[:3]
            )
        tracker.state = state
        if state in (HostState.UP, HostState.DEGRADED):
            tracker.failing_since = None
        if state is HostState.UP:
            del self.trackers[key]
        self._changes.put_nowait((*key, state))

    # --- announcing -----------------------------------------------------------------

    async def load(self) -> None:
        """Resume open outages after a restart: known, so not announced again."""
        for row in await self._store.load_open_outages():
            outage = OpenOutage(row.id, row.network, row.host, row.started_at, row.detail)
            for notice in row.notices:
                outage.notices[notice.channel_id] = Notice(
                    notice.channel, notice.message_ref, notice.affected
                )
            self.open[(row.network, row.host)] = outage
            pool = self.pools.get((row.network, row.host))
            for host in sorted(pool.hosts) if pool else [row.host]:
                self._resume_down(row.network, host, outage, self.rules.failures_to_down)
            if pool is not None:
                self._resume_down(row.network, row.host, outage, 0)

    def _resume_down(self, network: str, host: str, outage: OpenOutage, failures: int) -> None:
        """A tracker that starts DOWN, as the open `outage` left it before the restart."""
        self.trackers[(network, host)] = HostTracker(
            network,
            host,
            state=HostState.DOWN,
            failures_in_row=failures,
            failing_since=outage.started_at,
            last_detail=outage.detail,
        )

    async def run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._update_every_s):
                    network, host, state = await self._changes.get()
            except TimeoutError:
                async with self._busy:
                    await self.refresh()
                continue
            async with self._busy:
                await self.handle(network, host, state)

    async def settle(self) -> None:
        """Handle every state change queued so far, and wait for one under way."""
        while not self._changes.empty():
            network, host, state = self._changes.get_nowait()
            async with self._busy:
                await self.handle(network, host, state)
        async with self._busy:
            pass

    async def handle(self, network: str, host: str, state: HostState) -> None:
        key = (network, host)
        outage = self.open.get(key)
        if state is HostState.DOWN and outage is None:
            await self._start(network, host)
        elif state is HostState.DOWN and outage is not None and outage.recovering:
            outage.recovering = False
            await self._update(outage)
        elif state is HostState.RECOVERING and outage is not None:
            outage.recovering = True
            await self._update(outage)
        elif state in (HostState.UP, HostState.DEGRADED) and outage is not None:
            await self._resolve(outage)  # DEGRADED: a pool serving again with a member short

    async def refresh(self) -> None:
        """Periodic in-place update: duration so far, newly affected channels."""
        for outage in list(self.open.values()):
            await self._update(outage)

    def _text(self, outage: OpenOutage, affected: int, *, resolved_after: float | None = None,
              caught_up: int = 0) -> RichMessage:  # fmt: skip
        label = f"{outage.host} ({outage.network})"
        plural = (outage.network, outage.host) in self.pools
        tracker = self.trackers.get((outage.network, outage.host))
        follows = f"{affected} follow{'s' if affected != 1 else ''} here affected"
        if outage.network.startswith("chat:"):
            return self._chat_text(outage, affected, resolved_after)
        if resolved_after is not None:
            text = (
                f"✅ {label} {'are' if plural else 'is'} back: resolved after "
                f"{duration(resolved_after)}; "
                f"{caught_up} post{'s' if caught_up != 1 else ''} caught up."
            )
            return RichMessage(text=text, title=f"Resolved: {label}", footer="Starling")
        now = self._clock.now().timestamp()
        outcome = tracker.last_outcome if tracker else Outcome.TIMEOUT
        detail = (tracker.last_detail if tracker else "") or outage.detail
        if outage.recovering:
            text = (
                f"↻ {label} {'are' if plural else 'is'} answering again after "
                f"{duration(now - outage.started_at)} "
                f"({follows}); catching up on missed posts."
            )
        else:
            so_far = now - outage.started_at
            lasting = f" — {duration(so_far)} so far" if so_far >= 60 else ""
            text = (
                f"⚠️ {label} {_verb(outcome, plural)} since {hhmm(outage.started_at)}{lasting} "
                f"({follows}). Last error: {detail or outcome.value}. "
                "Posts will be caught up when it is back."
            )
        text += self._quote(outage.network)
        return RichMessage(text=text, title=f"Outage: {label}", footer="Starling")

    def _quote(self, network: str) -> str:
        """What the network's official status page says, when one is configured."""
        quote = self._official(network) if self._official is not None else None
        return f" {quote}." if quote else ""

    def _chat_text(
        self, outage: OpenOutage, waiting: int, resolved_after: float | None
    ) -> RichMessage:
        """A chat platform's own outage, told on the other platforms."""
        label = f"Chat platform {outage.host}"
        if resolved_after is not None:
            text = f"✅ {label} is back after {duration(resolved_after)}; the outbox is flushing."
            return RichMessage(text=text, title=f"Resolved: {label}", footer="Starling")
        tracker = self.trackers.get((outage.network, outage.host))
        detail = (tracker.last_detail if tracker else "") or outage.detail
        text = (
            f"⚠️ {label} is failing since {hhmm(outage.started_at)}; posts for its channels "
            f"wait in the outbox ({waiting} follows there). Last error: {detail}."
        ) + self._quote(outage.network)
        return RichMessage(text=text, title=f"Outage: {label}", footer="Starling")

    def _wanted(self, channel: ChannelRef) -> bool:
        return self._announce and channel.native_id not in self._quiet

    def in_quiet_hours(self) -> bool:
        """During quiet hours no new announcement is posted; edits still happen, and
        the first update after the quiet hours posts what was held back."""
        if self._quiet_hours is None:
            return False
        now = self._clock.now().astimezone(UTC)
        minute = now.hour * 60 + now.minute
        start, end = self._quiet_hours
        return start <= minute < end if start <= end else minute >= start or minute < end

    async def _start(self, network: str, host: str) -> None:
        tracker = self.trackers.get((network, host))
        if tracker is None or tracker.state is not HostState.DOWN:
            return  # it recovered before this change was handled: nothing to announce
        started = tracker.failing_since or self._clock.now().timestamp()
        outage_id = await self._store.open_outage(network, host, started, tracker.last_detail)
        outage = OpenOutage(
            outage_id, network, host, started, tracker.last_detail,
            admitted_at_start=self._admitted(network, host),
        )  # fmt: skip
        self.open[(network, host)] = outage
        log.warning("%s (%s) is down: %s", host, network, tracker.last_detail)
        await self._update(outage)

    async def _update(self, outage: OpenOutage) -> None:
        for channel_id, (channel, count) in self._affected(outage.network, outage.host).items():
            if not self._wanted(channel):
                continue
            notice = outage.notices.get(channel_id)
            message = self._text(outage, count)
            chat = self._chats.get(channel.platform)
            if chat is None:
                continue
            if notice is None and self.in_quiet_hours():
                continue
            try:
                if notice is None:
                    key = f"starling-outage:{outage.id}:{channel_id}"
                    ref = await chat.send(channel, message, key)
                    outage.notices[channel_id] = Notice(channel, ref, count)
                    await self._store.add_outage_notice(outage.id, channel_id, ref, count)
                else:
                    notice.affected = count
                    await chat.edit(channel, notice.message_ref, message)
            except Exception:
                log.exception("could not announce the outage of %s in %s", outage.host,
                              channel.native_id)  # fmt: skip

    async def _resolve(self, outage: OpenOutage) -> None:
        ended = self._clock.now().timestamp()
        caught_up = max(0, self._admitted(outage.network, outage.host) - outage.admitted_at_start)
        del self.open[(outage.network, outage.host)]
        await self._store.close_outage(outage.id, ended, caught_up)
        log.warning("%s (%s) is back after %s", outage.host, outage.network,
                    duration(ended - outage.started_at))  # fmt: skip
        for notice in outage.notices.values():
            chat = self._chats.get(notice.channel.platform)
            if chat is None:
                continue
            message = self._text(
                outage, notice.affected, resolved_after=ended - outage.started_at,
                caught_up=caught_up,
            )  # fmt: skip
            try:
                await chat.edit(notice.channel, notice.message_ref, message)
            except Exception:
                log.exception("could not mark the outage of %s resolved", outage.host)

    def state_of(self, network: str) -> list[HostTracker]:
        return [t for (net, _), t in sorted(self.trackers.items()) if net == network]


def parse_quiet_hours(text: str) -> tuple[int, int] | None:
    """`"22:00-07:00"` (UTC) → minutes of the day; `""` → no quiet hours."""
    if not text.strip():
        return None
    try:
        start, end = (part.strip() for part in text.split("-"))
        minutes = []
        for part in (start, end):
            hours, _, mins = part.partition(":")
            value = int(hours) * 60 + int(mins or 0)
            if not 0 <= value < 24 * 60:
                raise ValueError(part)
            minutes.append(value)
    except ValueError:
        raise ValueError("write quiet hours like 22:00-07:00 (UTC)") from None
    return minutes[0], minutes[1]
