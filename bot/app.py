"""The one place that wires Starling together: built from settings, passed down.

`App` owns the store, the plugins, the relay, the scheduler and the supervisor.
Nothing reaches it through a global; tests build as many as they like.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from bot import __version__
from bot.clock import Clock, SystemClock
from bot.commands import Commands
from bot.config import ConfigError, Settings
from bot.dispatch import Dispatcher, chat_network
from bot.errors import UserError
from bot.filters import CompiledFilters
from bot.health import HealthBook
from bot.metrics import Metrics
from bot.model import ChannelRef, Filters, Post, Subscription, Target, Tombstone
from bot.outage import HostState, OutageRules, OutageWatch, parse_quiet_hours
from bot.plugins import CHAT_GROUP, NETWORK_GROUP, discover, load_factory
from bot.pluginstate import StateHub
from bot.postback import PostBack, PostPolicy
from bot.protocols import Chat, Invocation, Network, PluginContext, Source, StreamingSource
from bot.relay import Follower, Relay, ResourceState
from bot.render import render
from bot.scheduler import Scheduler
from bot.statuspages import StatusPages
from bot.store import Store, open_store
from bot.store.base import NewOutboxRow, OutboxItem, StoredResource
from bot.store.sqlite import DuplicateSubscription
from bot.supervise import Supervisor
from bot.timefmt import duration, hhmm
from bot.web import StatusServer

log = logging.getLogger(__name__)

HEARTBEAT_FILE = "heartbeat"


class App:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        networks: dict[str, Network],
        chats: dict[str, Chat],
        clock: Clock,
        health: HealthBook,
    ) -> None:
        self.settings = settings
        self.store = store
        self.networks = networks
        self.chats = chats
        self.clock = clock
        self.health = health
        self.supervisor = Supervisor()
        self.dispatcher = Dispatcher(
            store,
            chats,
            clock,
            self.supervisor,
            self._paused,
            digest_threshold=settings.digest_threshold,
            digest_max_items=settings.digest_max_items,
            health=health,
            on_upstream_delete=settings.on_upstream_delete,
        )
        sources: dict[str, Source] = {
            name: net.source for name, net in networks.items() if net.source is not None
        }
        self.relay = Relay(
            store,
            sources,
            self.dispatcher,
            self.supervisor,
            text_limit=settings.text_limit,
            mirror_footer=self.mirror_footer,
        )
        self.scheduler = Scheduler(
            self.relay,
            clock,
            self.supervisor,
            jitter=settings.jitter,
            max_backoff_s=settings.max_backoff_s,
            max_concurrent_polls=settings.max_concurrent_polls,
            backlog=lambda: self.dispatcher.waiting,
        )
        self.status_pages = (
            StatusPages(
                settings.status_pages,
                health,
                clock,
                interval_s=settings.status_page_interval_s,
                timeout_s=settings.status_page_timeout_s,
            )
            if settings.status_pages
            else None
        )
        self.outages = OutageWatch(
            store,
            chats,
            clock,
            rules=OutageRules(
                failures_to_down=settings.outage_failures,
                window_s=settings.outage_window_s,
                degraded_rate=settings.outage_degraded_rate,
                down_rate=settings.outage_down_rate,
                min_requests=settings.outage_min_requests,
                successes_to_up=settings.outage_recovery_successes,
            ),
            affected=self.affected_channels,
            admitted=self._admitted_on,
            announce=settings.outage_announce,
            quiet_channels=frozenset(settings.outage_quiet_channels),
            quiet_hours=parse_quiet_hours(settings.outage_quiet_hours),
            update_every_s=settings.outage_update_s,
            official=self.status_pages.quote if self.status_pages else None,
        )
        health.listeners.append(self.outages.observe)
        health.unit_of = self.outages.unit_of  # polls link follows to a pool, not one member
        # network → the host (or pool) a streamed follow depends on; asked when counting
        self._stream_links: dict[str, Callable[[Target], str | None]] = {}
        for name, net in networks.items():
            pools = getattr(net.source, "host_pools", None)  # optional: hosts backing each other
            for unit, members in pools().items() if callable(pools) else ():
                self.outages.add_pool(name, unit, list(members))
        self.metrics = Metrics(
            scheduler=self.scheduler,
            dispatcher=self.dispatcher,
            relay=self.relay,
            outages=self.outages,
            health=health,
            supervisor=self.supervisor,
            status_pages=self.status_pages,
        )
        health.listeners.append(self.metrics.observe)
        self.web = (
            StatusServer(
                store=store,
                health=health,
                outages=self.outages,
                metrics=self.metrics,
                clock=clock,
                networks=list(networks),
                chats=list(chats),
                status_pages=self.status_pages,
                host=settings.web_host,
                port=settings.web_port,
                settle_minutes=int(settings.health_flush_s // 60) + 2,
            )
            if settings.web_port
            else None
        )
        self.postback = PostBack(
            store,
            networks,
            chats,
            clock,
            PostPolicy(
                targets=settings.postback_targets,
                approval=tuple(settings.postback_approval),
                approvers=frozenset(settings.postback_approvers),
                direct_posters=frozenset(settings.postback_direct_posters),
                posters=frozenset(settings.postback_posters),
                self_approval=settings.postback_self_approval,
                rate_per_hour=settings.postback_rate_per_hour,
                fallback=settings.postback_fallback,
                hold_s=settings.postback_hold_s,
                check_s=settings.postback_check_s,
                retry_s=settings.postback_retry_s,
                require_alt=settings.postback_require_alt,
                allow_private=settings.allow_private_addresses,
            ),
            is_down=self.network_down,
        )
        self.commands = Commands(self)
        for chat in chats.values():  # e.g. Slack OAuth keeps its installations in the store
            attach_store = getattr(chat, "attach_store", None)
            if callable(attach_store):
                attach_store(store)
        self.started_at = time.monotonic()
        self._aliases = {
            alias.lower(): name for name, net in networks.items() for alias in (name, *net.aliases)
        }
        self._stop = asyncio.Event()
        self._streams: dict[str, asyncio.Task[None]] = {}
        self._ops: list[tuple[int, ChannelRef]] = []
        self._mirrored: set[int] = set()  # subscriptions that have a mirror
        self._primary_states: dict[int, ResourceState] = {}
        self._running = False

    @classmethod
    async def create(
        cls,
        settings: Settings,
        *,
        clock: Clock | None = None,
        chats: dict[str, Chat] | None = None,
        extra_networks: dict[str, Network] | None = None,
    ) -> App:
        """Load the configured plugins through their entry points and open the store.

        `chats` replaces the configured chat plugins (tests and benchmarks pass a
        `bot.testing.RecordingChat`, errbot-style, so a whole bot runs with no mocks).
        `extra_networks` adds networks beside the installed ones (tests of the plugin
        contract itself).
        """
        clock = clock or SystemClock()
        health = HealthBook(clock)
        settings.data_dir.mkdir(parents=True, exist_ok=True)

        plugin_states = StateHub()  # plugin state; the store is attached once it is open

        def context(name: str) -> PluginContext:
            return PluginContext(
                name=name,
                config=settings.plugin_config(name),
                health=health,
                clock=clock,
                allow_private_addresses=settings.allow_private_addresses,
                data_dir=str(settings.data_dir),
                state=plugin_states.for_plugin(name),
            )

        networks: dict[str, Network] = {}
        for name, ep in sorted(discover(NETWORK_GROUP).items()):
            if str(context(name).config.get("enabled", True)).lower() in ("false", "0", "no"):
                continue
            try:
                networks[name] = load_factory(ep)(context(name))
            except ConfigError:
                raise  # a wrong option is the operator's to fix: say so and stop
            except Exception:
                # One broken plugin must not take every other network down with it.
                log.exception("network plugin %s (%s) failed to load; skipped", name, ep.value)
        networks.update(extra_networks or {})
        available = discover(CHAT_GROUP)
        if chats is not None:
            store = await open_store(settings.db_path)
            plugin_states.attach(store)
            return cls(settings, store, networks, chats, clock, health)
        chats = {}
        for name in settings.chats:
            if name not in available:
                known = ", ".join(sorted(available)) or "none installed"
                raise ConfigError(f"chat plugin {name!r} is not installed (available: {known})")
            chats[name] = load_factory(available[name])(context(name))
        store = await open_store(settings.db_path)
        plugin_states.attach(store)
        return cls(settings, store, networks, chats, clock, health)

    # --- lookups used by commands ---------------------------------------------------

    def network(self, name: str) -> Network:
        real = self._aliases.get(name.lower())
        if real is None:
            raise UserError(
                f"unknown network {name!r}; available: {', '.join(self.network_names())}"
            )
        return self.networks[real]

    def network_names(self) -> list[str]:
        return [
            name + (f" ({', '.join(net.aliases)})" if net.aliases else "")
            for name, net in sorted(self.networks.items())
        ]

    # --- subscriptions --------------------------------------------------------------

    async def subscribe(
        self,
        inv: Invocation,
        target: Target,
        filters: Filters,
        interval_s: float,
        last: int,
        mirror_of: Subscription | None = None,
    ) -> tuple[Subscription, int]:
        """Store a subscription; a new resource starts from "now" (plus `last` posts)."""
        compiled = CompiledFilters.of(filters)
        existing = await self.store.find_resource(target)
        posts: list[Post] = []
        cursor = None
        if existing is None or last:
            source = self.networks[target.network].source
            assert source is not None
            result = await source.fetch(target, None)
            posts, cursor = result.posts, result.cursor

        def backlog(sub: Subscription, channel_id: int) -> list[NewOutboxRow]:
            wanted = [p for p in posts if compiled.accepts(p)]
            wanted.sort(key=lambda p: p.created_at or datetime.min.replace(tzinfo=UTC))
            return (
                [
                    NewOutboxRow(
                        channel_id, sub.id, p.uid, render(p, text_limit=self.settings.text_limit)
                    )
                    for p in wanted[-last:]
                ]
                if last
                else []
            )

        try:
            sub, items = await self.store.create_subscription(
                inv.channel,
                target,
                filters,
                interval_s,
                inv.user,
                baseline_keys=[p.uid for p in posts],
                backlog=backlog,
                cursor=cursor,
                mirror_of=mirror_of.id if mirror_of else None,
            )
        except DuplicateSubscription as dup:
            raise UserError(
                f"this channel already follows that as #{dup.existing_id}; "
                f"/unfollow {dup.existing_id} first to change its options"
            ) from None
        self.dispatcher.submit(items)
        if mirror_of is not None:
            self._mirrored.add(mirror_of.id)
            await self._refresh_resource(mirror_of.target)
        await self._refresh_resource(target)
        return sub, len(items)

    async def unsubscribe(self, channel: ChannelRef, sub_id: int) -> Subscription | None:
        sub = await self.store.remove_subscription(channel, sub_id)
        if sub is not None:
            await self._refresh_resource(sub.target)
        return sub

    async def _refresh_resource(self, target: Target) -> None:
        """Bring the scheduler's view of one resource in line with the store."""
        stored = await self.store.find_resource(target)
        if stored is None:
            for state in list(self.scheduler.states.values()):
                if state.target == target:
                    self.scheduler.remove(state.id)
            self._restart_stream(target.network)
            return
        followers = tuple(
            self._follower(sub, channel_id)
            for sub, channel_id in await self.store.subscriptions_for(stored.id)
        )
        existing = self.scheduler.states.get(stored.id)
        if not followers:
            self.scheduler.remove(stored.id)
            self._restart_stream(target.network)
            return
        interval = min(f.interval_s for f in followers)
        if existing is None:
            self.scheduler.add(ResourceState.of(stored, followers, interval), first_in=interval)
        else:
            existing.followers = followers
            if interval != existing.interval_s:
                existing.interval_s = interval
                self.scheduler.add(existing, first_in=interval)
        self._restart_stream(target.network)

    def _follower(self, sub: Subscription, channel_id: int) -> Follower:
        grouped = sub.mirror_of is not None or sub.id in self._mirrored
        return Follower.of(sub, channel_id, grouped=grouped)

    async def load_resources(self) -> int:
        """Schedule every active resource; the store yields each one's followers together.

        Each state is built as soon as its last follower is read, so nothing of the
        load outlives its chunk (kept objects interleaved with freed ones hold RSS).
        """
        self._mirrored = set()
        resources = 0
        current: StoredResource | None = None
        batch: list[Follower] = []

        def schedule() -> None:
            if current is not None and batch:
                interval = min(f.interval_s for f in batch)
                self.scheduler.add(ResourceState.of(current, tuple(batch), interval))
            batch.clear()

        async for chunk in self.store.load_followers():
            for stored, sub, channel_id in chunk:
                if current is None or stored.id != current.id:
                    schedule()
                    current = stored
                    resources += 1
                if sub.mirror_of is not None:
                    self._mirrored.add(sub.mirror_of)
                batch.append(self._follower(sub, channel_id))
        schedule()
        if self._mirrored:  # a primary is `grouped` too, but its mirror may load after it
            for state in self.scheduler.states.values():
                if any(f.sub_id in self._mirrored and not f.grouped for f in state.followers):
                    state.followers = tuple(
                        replace(f, grouped=True) if f.sub_id in self._mirrored else f
                        for f in state.followers
                    )
        return resources

    def _state_of(self, sub_id: int) -> ResourceState | None:
        for state in self.scheduler.states.values():
            if any(f.sub_id == sub_id for f in state.followers):
                return state
        return None

    def mirror_footer(self, mirror: Follower, mirror_network: str) -> str | None:
        """While the primary's host is down, a mirror relays — and says so."""
        if mirror.mirror_of is None:
            return None
        primary = self._primary_states.get(mirror.mirror_of)
        if primary is None or primary.id not in self.scheduler.states:
            primary = self._state_of(mirror.mirror_of)
            if primary is None:
                return None
            self._primary_states[mirror.mirror_of] = primary
        network = primary.target.network
        tracker = self.outages.trackers.get((network, primary.host))
        if tracker is None or tracker.state is not HostState.DOWN:
            return None
        return f"via {mirror_network}, standing in while {network} is down"

    def _restart_stream(self, network: str) -> None:
        """(Re)open a streaming network's connection with the current set of targets.

        Polling goes on beside the stream at the subscription's interval: it is the
        backfill that catches whatever a dropped connection missed.
        """
        if not self._running:
            return
        source = self.networks[network].source if network in self.networks else None
        if not isinstance(source, StreamingSource):
            return
        old = self._streams.pop(network, None)
        if old is not None:
            old.cancel()
        states = [s for s in self.scheduler.states.values() if s.target.network == network]
        if not states:
            return
        targets = [s.target for s in states]
        cursors = {s.target.resource_key: s.cursor for s in states}
        # The sink's own index, built per (re)start: polled-only networks need none.
        by_key = {s.target.resource_key: s for s in states}
        stream = source
        # Optional: the host serving a target's stream (the core maps it to its pool).
        link = getattr(source, "stream_host", None)
        if callable(link):
            self._stream_links[network] = link

        async def sink(
            target: Target,
            posts: list[Post],
            cursor: str | None,
            *,
            deleted: Sequence[Tombstone] = (),
        ) -> None:
            state = by_key.get(target.resource_key)
            if state is not None and self.scheduler.states.get(state.id) is state:
                await self.relay.ingest(state, posts, cursor, deleted)

        self._streams[network] = self.supervisor.supervise(
            f"stream-{network}", lambda: stream.stream(targets, cursors, sink)
        )

    def _on_host(self, network: str, host: str) -> list[ResourceState]:
        """Resources last polled on `host`, and those streamed from it.

        `host` is what the outage tracker announces: a host, or the pool of hosts that
        back each other up (`host_pools`), so each side is mapped to its pool first.
        """
        linked = self._stream_links.get(network)
        unit = self.outages.unit_of

        def streamed_from_host(target: Target) -> bool:
            served_by = linked(target) if linked is not None else None
            return served_by is not None and unit(network, served_by) == host

        return [
            state
            for state in self.scheduler.states.values()
            if state.target.network == network
            and (unit(network, state.host) == host or streamed_from_host(state.target))
        ]

    def affected_channels(self, network: str, host: str) -> dict[int, tuple[ChannelRef, int]]:
        """Channels with follows on `host`, and how many follows each has there.

        When a chat platform itself fails, the ops channels on the other platforms
        hear it, with the number of that platform's follows waiting in the outbox.
        """
        if network.startswith("chat:"):
            return self._ops_channels(network.removeprefix("chat:"))
        channels: dict[int, tuple[ChannelRef, int]] = {}
        for state in self._on_host(network, host):
            for follower in state.followers:
                ref, count = channels.get(follower.channel_id, (follower.channel, 0))
                channels[follower.channel_id] = (ref, count + 1)
        return channels

    def _ops_channels(self, failing: str) -> dict[int, tuple[ChannelRef, int]]:
        waiting = sum(
            1
            for state in self.scheduler.states.values()
            for f in state.followers
            if f.channel.platform == failing
        )
        return {
            channel_id: (channel, waiting)
            for channel_id, channel in self._ops
            if channel.platform != failing
        }

    async def _load_ops_channels(self) -> None:
        for spec in self.settings.ops_channels:
            platform, _, name = spec.partition(":")
            if platform in self.chats and name:
                channel = ChannelRef(platform, name, name)
                self._ops.append((await self.store.ensure_channel(channel), channel))

    def network_down(self, network: str) -> bool:
        """A network counts as down while any of its hosts (or a whole pool) is down."""
        return self.outages.is_down(network)

    def _admitted_on(self, network: str, host: str) -> int:
        return sum(state.admitted for state in self._on_host(network, host))

    async def resume(self, channel: ChannelRef, sub_id: int) -> Subscription | None:
        """Unpause a subscription (after its channel permission or token is fixed)."""
        sub = await self.store.resume_subscription(channel, sub_id)
        if sub is not None:
            await self._refresh_resource(sub.target)
        return sub

    async def _paused(self, item: OutboxItem, reason: str) -> None:
        await self.store.pause_subscription(item.subscription_id, reason)
        for state in self.scheduler.states.values():
            if any(f.sub_id == item.subscription_id for f in state.followers):
                await self._refresh_resource(state.target)
                break
        log.warning("subscription #%d paused: %s", item.subscription_id, reason)

    # --- status ---------------------------------------------------------------------

    async def status_text(self) -> str:
        uptime = int(time.monotonic() - self.started_at)
        subs = sum(len(s.followers) for s in self.scheduler.states.values())
        depth = await self.store.outbox_depth()
        lines = [
            f"Starling {__version__} — up {uptime // 60} min; {subs} subscriptions over "
            f"{len(self.scheduler.states)} sources; outbox: {depth} waiting; "
            f"delivered this run: {self.dispatcher.delivered}."
        ]
        by_network = self.health.by_network()
        for name in sorted(self.networks):
            hosts = by_network.get(name, [])
            if not hosts:
                lines.append(f"{name}: no requests yet")
                lines += await self._extra_status(name)
                continue
            trackers = {t.host: t for t in self.outages.state_of(name)}
            unwell = [t for t in trackers.values() if t.state is not HostState.UP]
            last_ok = max((h.last_ok_at or 0 for h in hosts), default=0)
            state = (
                "up" if not unwell else ", ".join(f"{t.host} {t.state.value}" for t in unwell[:5])
            )
            ok_text = f", last success {hhmm(last_ok)}" if last_ok else ""
            count = f"{len(hosts)} host{'s' if len(hosts) != 1 else ''}"
            lines.append(f"{name}: {state} — {count}{ok_text}")
            lines += await self._extra_status(name)
            if self.status_pages is not None:
                lines += [f"  {line}" for line in self.status_pages.status_lines(name)]
            for h in [h for h in hosts if h.consecutive_failures][:10]:
                outage = self.outages.open.get((name, h.host))
                since = hhmm(outage.started_at) if outage else hhmm(h.last_failure_at or 0)
                lines.append(
                    f"  {h.host}: {h.consecutive_failures} failures in a row since {since} "
                    f"(last: {h.last_outcome.value}"
                    + (f" {h.last_status}" if h.last_status else "")
                    + (f" — {h.last_detail}" if h.last_detail else "")
                    + ")"
                )
        for name in sorted(self.chats):
            hosts = by_network.get(chat_network(name), [])
            failing = [h for h in hosts if h.consecutive_failures]
            if failing:
                h = failing[0]
                lines.append(
                    f"chat {name}: {h.consecutive_failures} failed sends in a row "
                    f"(last: {h.last_detail or h.last_outcome.value}); posts wait in the outbox"
                )
            else:
                lines.append(f"chat {name}: ok")
        history = await self.store.recent_outages(5)
        if history:
            lines.append("Recent outages:")
            for past in history:
                start = hhmm(past.started_at)
                if past.ended_at is None:
                    lines.append(f"  {past.host} ({past.network}): down since {start}, ongoing")
                else:
                    lines.append(
                        f"  {past.host} ({past.network}): {start}, lasted "
                        f"{duration(past.ended_at - past.started_at)}, "
                        f"{past.caught_up} posts caught up"
                    )
        return "\n".join(lines)

    async def _extra_status(self, name: str) -> list[str]:
        """A network may add its own figures (e.g. X's reads used today): optional.

        `refresh_status()`, also optional, loads what those lines show from the store
        first, so a restarted bot reports today's figures before its first request.
        """
        network = self.networks[name]
        refresh = getattr(network, "refresh_status", None)
        if callable(refresh):
            await refresh()
        extra = getattr(network, "status_lines", None)
        return [f"  {line}" for line in extra()] if callable(extra) else []

    # --- lifecycle ------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Run until a signal, or until every chat has finished (console end of input)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        if self.web is not None:
            await self.web.start()  # /healthz says "starting" until the tasks run
        await self.health.load(self.store)
        await self.outages.load()
        await self._load_ops_channels()
        count = await self.load_resources()
        requeued = await self.dispatcher.recover()
        # Everything loaded so far lives for the whole run: keep the collector off it,
        # and collect less often (measured: ~20% of CPU went to gen-2 sweeps).
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        log.info("Starling %s: %d sources, %d deliveries resumed", __version__, count, requeued)
        scheduler = self.supervisor.supervise("scheduler", self.scheduler.run)
        self._running = True
        for network in self.networks:
            self._restart_stream(network)
        self.supervisor.supervise("health-flush", self._flush_health_forever)
        self.supervisor.supervise("outages", self.outages.run)
        self.supervisor.supervise("postback", self.postback.run)
        self.supervisor.supervise("heartbeat", self._heartbeat_forever)
        chat_tasks = [
            self.supervisor.supervise(f"chat-{name}", functools.partial(chat.run, self.commands))
            for name, chat in self.chats.items()
        ]
        if self.status_pages is not None:
            self.supervisor.supervise("status-pages", self.status_pages.run)
        if self.web is not None:
            self.web.watch("scheduler", scheduler)
            for name, task in zip(self.chats, chat_tasks, strict=True):
                self.web.watch(f"chat {name}", task)
        stop_wait = asyncio.ensure_future(self._stop.wait())
        all_chats = asyncio.ensure_future(asyncio.wait(chat_tasks)) if chat_tasks else None
        waiting = [stop_wait] + ([all_chats] if all_chats else [])
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        for fut in waiting:
            fut.cancel()
        log.info("stopping: flushing pending deliveries")
        scheduler.cancel()
        await self._shutdown()

    async def _shutdown(self) -> None:
        grace = self.settings.shutdown_grace_s
        try:
            async with asyncio.timeout(grace):
                await self.scheduler.quiesce()
                await self.dispatcher.drain()
        except TimeoutError:
            log.warning("shutdown grace of %.0f s ran out; the outbox keeps the rest", grace)
        await self.health.flush(self.store)
        await self.supervisor.stop()
        if self.web is not None:
            await self.web.stop()
        await self.aclose()

    async def aclose(self) -> None:
        for chat in self.chats.values():
            await chat.aclose()
        for net in self.networks.values():
            await net.aclose()
        if self.status_pages is not None:
            await self.status_pages.aclose()
        await self.store.close()

    async def _flush_health_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_flush_s)
            await self.health.flush(self.store)

    async def _heartbeat_forever(self) -> None:
        path = Path(self.settings.data_dir) / HEARTBEAT_FILE
        while True:
            path.touch()
            await asyncio.sleep(self.settings.heartbeat_s)
