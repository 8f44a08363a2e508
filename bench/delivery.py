"""Delivery benchmark: how close Starling's delivery gets to each chat's real rate limit.

For each platform, a real Starling (`App.create` with the real chat plugin, the
real feeds plugin and SQLite) delivers a full outbox over many channels to the
local fake of that chat (`tests/fakes/`), in the same process, on loopback:

* one local feed per channel (`tests.feedserver.FeedServer`), each holding more
  items than the window can deliver; one real fetch through the feeds plugin
  gives every item, and `store.create_subscription` stores the subscription with
  all of them as backlog rows (what `/follow URL --last N` does), before the app
  starts. `App.run` then finds them in the outbox (`dispatcher.recover`) and every
  channel's lane starts at once. `digest_threshold = 0`: one message per post.
* the chat runs with its real default pacing (`min_interval_s` is not overridden).
* the window starts one per-channel rate-limit window (Discord 5 s, Slack 1 s)
  after the first message reaches the fake, and lasts a whole number of them.
  Achieved rate = the sum over channels of each channel's sustained rate in the
  window (its messages after the first, over the time from its first to its
  last), as the fake saw them arrive. A plain count over a short window is off
  by up to one message per channel, so it is shown beside it, not used.
* why the warm-up is left out: a lane's pacing clock starts with its first send,
  and that send also looks the channel up, behind every other lane's lookup at
  the global-limit gate. Its post reaches the platform up to a second late, and
  the next few follow sooner until the lane is back on its 1 s schedule. With
  100 ms of round trip that catch-up read as "above 1/s per channel" over a 5 s
  window starting at the first arrival, and it spent Discord's 5-per-5 s bucket
  early, so discord.py then held the 6th message to the bucket's reset (no 429:
  Discord allows it). Measured from the second bucket window on, lanes are on
  their schedule.
* a scenario with `rtt_ms` puts `DelayProxy` (a TCP delay line) between Starling
  and the fake, for the round trip to the real service that loopback leaves out.

Both fakes enforce the real limits on their own, so a 429 is Starling's fault:

* Discord: 5 messages per 5 s per channel (the fake's buckets, set explicitly)
  and the standing global limit, 50 bot-token requests in any second (a 429 with
  `global: true`). The request log is also checked against 50/s. Discord's
  per-channel limit is the 5 s bucket with fixed resets (discord.py waits for the
  reset on its own), so two messages less than a second apart are allowed: after
  a slow send the next one follows sooner, since pacing counts from the start of
  a send. In a short window that catch-up can read as a little above 1/s; the
  fake's own 429 count is the check that matters.
* Slack: `FakeSlack(enforce_limits=True)`: chat.postMessage as a per-channel
  bucket of one message per second with a burst of 2, and the per-workspace,
  per-method tiers for every other method.

With 100 ms of added round trip the log check once found 12 requests over 50/s
with no 429 (the fake did not enforce the global limit then). The cause was in
Starling: the dispatcher's `max_rate_per_s` paces sends only, and when 20 lanes
started at once their channel lookups (`GET /channels/{id}`) came on top, 43 in
the first second plus the sends. Every bot-token request now passes one gate in
`plugins/discord/transport.py` that spaces them 1/45 s apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Result, Target, percentile, progress
from bot.app import App
from bot.clock import SystemClock
from bot.config import load_settings
from bot.errors import Outcome
from bot.model import ChannelRef, Filters, RichMessage, Subscription
from bot.model import TargetKind as Kind
from bot.plugins import NETWORK_GROUP, discover
from bot.protocols import Chat, CommandService, HealthRecorder, PluginContext
from bot.render import render
from bot.store.base import NewOutboxRow
from tests.feedserver import FeedServer

BENCH = "delivery"
DISCORD_BUCKET = (5, 5.0)  # messages per seconds, per channel (Discord's documented limit)
DISCORD_GLOBAL_PER_S = 50.0  # requests per second, per bot, all routes
DISCORD_GLOBAL_LIMIT = 50  # what the fake enforces, the same limit
SLACK_PER_CHANNEL_S = 1.0  # chat.postMessage: about one per second per channel
SPARE_ITEMS = 8  # items per channel beyond what the window can deliver
WARMUP_ITEMS = 5  # what one lane delivers in the warm-up (Discord: one 5 s bucket)
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class Scenario:
    platform: str  # "discord" or "slack"
    channels: int
    window_s: float  # a whole number of the platform's rate-limit windows
    rtt_ms: float = 0.0  # round trip added between Starling and the platform (DelayProxy)

    @property
    def key(self) -> str:
        rtt = f"_rtt{self.rtt_ms:.0f}ms" if self.rtt_ms else ""
        return f"{self.platform}_{self.channels}ch{rtt}"


FULL = (
    Scenario("discord", 20, 20.0),
    Scenario("discord", 20, 20.0, rtt_ms=100.0),
    Scenario("discord", 60, 10.0),
    Scenario("slack", 20, 15.0),
)
QUICK = (
    Scenario("discord", 20, 10.0),  # 10 s: long enough to see a bucket reset
    Scenario("discord", 20, 5.0, rtt_ms=100.0),
    Scenario("slack", 10, 5.0),
)


def log(message: str) -> None:
    progress(BENCH, message)


# --- seams ---------------------------------------------------------------------------


class LateHealth:
    """The chat is built before the App and its health book; forward once it exists."""

    def __init__(self) -> None:
        self.target: HealthRecorder | None = None

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
        if self.target is not None:
            self.target.record(
                network, host, outcome, latency_s=latency_s, status=status, detail=detail
            )


class TimedChat:
    """A `Chat` that is the plugin's, timing each `send` (to explain the lane period).

    `send_s` leaves out each channel's first send, which includes logging in and
    looking the channel up.
    """

    def __init__(self, inner: Chat) -> None:
        self.inner = inner
        self.name = inner.name
        self.send_s: list[float] = []
        self.failures = 0
        self.min_interval_s = inner.min_interval_s
        self._seen: set[str] = set()

    async def run(self, commands: CommandService) -> None:
        await self.inner.run(commands)

    async def send(self, channel: ChannelRef, message: RichMessage, key: str) -> str:
        started = time.perf_counter()
        try:
            return await self.inner.send(channel, message, key)
        except Exception:
            self.failures += 1
            raise
        finally:
            if channel.native_id in self._seen:
                self.send_s.append(time.perf_counter() - started)
            self._seen.add(channel.native_id)

    async def edit(self, channel: ChannelRef, message_ref: str, message: RichMessage) -> None:
        await self.inner.edit(channel, message_ref, message)

    async def find_sent(self, channel: ChannelRef, key: str) -> str | None:
        return await self.inner.find_sent(channel, key)

    async def aclose(self) -> None:
        await self.inner.aclose()


class DelayProxy:
    """A loopback TCP proxy adding `rtt_s / 2` each way: the internet between Starling and
    the platform, which a loopback fake otherwise leaves out."""

    def __init__(self, target_port: int, rtt_s: float) -> None:
        self.target_port = target_port
        self.one_way_s = rtt_s / 2
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> DelayProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # closed by either side, or by __aexit__: the connection just ends
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        """Forward every chunk `one_way_s` after it arrived (a delay line, not a slowdown)."""
        loop = asyncio.get_running_loop()
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await line.get()
                await asyncio.sleep(max(due - loop.time(), 0.0))
                if not data:
                    break
                sink.write(data)
                await sink.drain()
            sink.close()

        out = asyncio.create_task(deliver())
        try:
            while data := await source.read(65536):
                line.put_nowait((loop.time() + self.one_way_s, data))
        finally:
            line.put_nowait((loop.time() + self.one_way_s, b""))
            with contextlib.suppress(OSError):
                await out


def via(url: str, port: int, proxy: DelayProxy | None) -> str:
    """`url` (on the fake's `port`) through the delay proxy, when there is one."""
    if proxy is None:
        return url
    return url.replace(f"127.0.0.1:{port}", f"127.0.0.1:{proxy.port}", 1)


def context(name: str, config: dict[str, Any], health: HealthRecorder, data: Path) -> PluginContext:
    return PluginContext(
        name=name,
        config=config,
        health=health,
        clock=SystemClock(),
        allow_private_addresses=True,
        data_dir=str(data),
    )


# --- the platforms -------------------------------------------------------------------


@dataclass
class World:
    """A running fake chat with its channels, and the real chat plugin pointed at it."""

    chat: Chat
    channels: list[ChannelRef]
    per_channel_rate: float  # messages/s the platform allows in one channel
    warmup_s: float  # left out before the window: one per-channel rate-limit window
    global_rate: float | None  # requests/s it allows over all channels, if any
    arrivals: Callable[[], dict[str, list[float]]]  # channel id → accepted message times
    requests: Callable[[], list[float]]  # every REST request's arrival time
    rate_limited: Callable[[], int | None]  # 429s the fake answered (None: never enforces)
    now: Callable[[], float]  # the clock `arrivals` use


@contextlib.asynccontextmanager
async def discord_world(
    channels: int, rtt_s: float, health: HealthRecorder, data: Path
) -> AsyncIterator[World]:
    from plugins.discord import create
    from tests.fakes.discord_server import DiscordServer

    limit, window = DISCORD_BUCKET
    async with (
        DiscordServer(
            bucket_limit=limit, bucket_window_s=window, global_limit_per_s=DISCORD_GLOBAL_LIMIT
        ) as server,
        contextlib.AsyncExitStack() as stack,
    ):
        proxy = await stack.enter_async_context(DelayProxy(server.port, rtt_s)) if rtt_s else None
        guild = server.add_guild("Bench")
        made = [server.add_channel(guild, f"news-{i}") for i in range(channels)]
        config = {
            "token": server.token,
            "api_url": via(server.api_url, server.port, proxy),
            "gateway_url": via(server.gateway_url, server.port, proxy),
            "guild_ids": guild.id,
        }
        chat = create(context("discord", config, health, data))
        post = "POST"

        def arrivals() -> dict[str, list[float]]:
            seen: dict[str, list[float]] = {c.id: [] for c in made}
            for r in server.requests:
                if r.method == post and r.status == 200 and r.path.endswith("/messages"):
                    seen.setdefault(r.path.split("/")[2], []).append(r.at)
            return seen

        yield World(
            chat=chat,
            channels=[ChannelRef("discord", c.id, c.name) for c in made],
            per_channel_rate=limit / window,
            warmup_s=window,
            global_rate=DISCORD_GLOBAL_PER_S,
            arrivals=arrivals,
            requests=lambda: [r.at for r in server.requests],
            rate_limited=lambda: sum(1 for r in server.requests if r.status == 429),
            now=time.monotonic,
        )
        if server.invalid_bodies:
            log(f"WARNING Discord refused bodies as invalid: {server.invalid_bodies[:2]}")


@contextlib.asynccontextmanager
async def slack_world(
    channels: int, rtt_s: float, health: HealthRecorder, data: Path
) -> AsyncIterator[World]:
    from plugins.slack import create
    from tests.fakes.slack_server import BOT_ID, FakeSlack

    async with FakeSlack(enforce_limits=True) as server, contextlib.AsyncExitStack() as stack:
        proxy = await stack.enter_async_context(DelayProxy(server.port, rtt_s)) if rtt_s else None
        made = [server.add_channel(f"news-{i}") for i in range(channels)]
        config = server.plugin_config(api_url=via(server.api_url, server.port, proxy))
        config.pop("min_interval_s", None)  # the plugin's own default pacing is what we measure
        chat = create(context("slack", config, health, data))
        limits = server.limits
        assert limits is not None

        def arrivals() -> dict[str, list[float]]:
            return {
                c.id: [float(m["ts"]) for m in c.messages if m.get("bot_id") == BOT_ID]
                for c in made
            }

        yield World(
            chat=chat,
            channels=[ChannelRef("slack", c.id, c.name) for c in made],
            per_channel_rate=SLACK_PER_CHANNEL_S,
            warmup_s=1.0 / SLACK_PER_CHANNEL_S,
            global_rate=None,
            arrivals=arrivals,
            requests=lambda: [],
            rate_limited=lambda: sum(limits.rate_limited.values()),
            now=time.time,
        )


WORLDS = {"discord": discord_world, "slack": slack_world}


def slack_ready() -> str:
    """Empty when the Slack plugin and its fake are there, else why not."""
    try:
        import plugins.slack  # noqa: F401
        import tests.fakes.slack_server  # noqa: F401
    except ImportError as err:
        return f"the Slack plugin or its fake is missing ({err})"
    return ""


# --- one measurement -----------------------------------------------------------------


async def prefill(app: App, feeds: FeedServer, channels: list[ChannelRef], items: int) -> int:
    """Each channel follows its own local feed with every item queued (as `/follow --last`)."""
    source = app.networks["feeds"].source
    assert source is not None
    queued = 0
    for index, channel in enumerate(channels):
        feed = feeds.add_feed(f"feed-{index}")
        for n in range(items):
            feed.add_item(
                title=f"Release notes {n} for project {index}",
                content=f"<p>What changed in <b>version {n}</b>: faster, smaller, "
                "fewer surprises. Read on for the details and the upgrade notes.</p>",
            )
        target = await source.resolve(Kind.ACCOUNT, feeds.feed_url(feed.name))
        fetched = await source.fetch(target, None)
        posts = fetched.posts

        def backlog(sub: Subscription, channel_id: int, posts: Any = posts) -> list[NewOutboxRow]:
            return [
                NewOutboxRow(
                    channel_id, sub.id, p.uid, render(p, text_limit=app.settings.text_limit)
                )
                for p in posts
            ]

        _, rows = await app.store.create_subscription(
            channel,
            target,
            Filters(),
            3600.0,
            "bench",
            baseline_keys=[p.uid for p in posts],
            backlog=backlog,
            cursor=fetched.cursor,
        )
        queued += len(rows)
    return queued


def peak_in(times: list[float], span_s: float) -> int:
    """The most events in any half-open interval of `span_s` seconds."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= span_s:
            start += 1
        best = max(best, end - start + 1)
    return best


def over_limit(times: list[float], limit: float, span_s: float = 1.0) -> int:
    """Events that arrived when `limit` had already arrived in the preceding `span_s`."""
    ordered = sorted(times)
    excess, start = 0, 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= span_s:
            start += 1
        if end - start >= limit:
            excess += 1
    return excess


async def measure(scenario: Scenario, work: Path) -> dict[str, Any]:
    items = math.ceil(scenario.window_s) + WARMUP_ITEMS + SPARE_ITEMS
    health = LateHealth()
    others: dict[str, Any] = {
        n: {"enabled": False} for n in discover(NETWORK_GROUP) if n != "feeds"
    }
    settings = load_settings(
        data_dir=work / "data",
        allow_private_addresses=True,
        digest_threshold=0,
        jitter=0.0,
        shutdown_grace_s=1.0,
        **others,
    )
    world_of = WORLDS[scenario.platform]
    async with (
        FeedServer() as feeds,
        world_of(scenario.channels, scenario.rtt_ms / 1000, health, work) as world,
    ):
        chat = TimedChat(world.chat)
        app = await App.create(settings, chats={chat.name: chat})
        health.target = app.health
        queued = await prefill(app, feeds, world.channels, items)
        task = asyncio.create_task(app.run(), name="starling")
        try:
            first = await _first_arrival(world, task)
            end = first + world.warmup_s + scenario.window_s
            await asyncio.sleep(max(end - world.now(), 0.0) + 0.2)
            arrivals = world.arrivals()
            requests = world.requests()
            limited = world.rate_limited()
        finally:
            app.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, STOP_TIMEOUT_S)
    return _figures(scenario, world, chat, queued, first, arrivals, requests, limited)


async def _first_arrival(world: World, task: asyncio.Task[None]) -> float:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if task.done():
            task.result()
            raise RuntimeError("Starling stopped before delivering anything")
        times = [t for ts in world.arrivals().values() for t in ts]
        if times:
            return min(times)
        await asyncio.sleep(0.02)
    raise RuntimeError(f"no message reached the fake within {START_TIMEOUT_S:.0f} s")


def _figures(
    scenario: Scenario,
    world: World,
    chat: TimedChat,
    queued: int,
    first: float,
    arrivals: dict[str, list[float]],
    requests: list[float],
    limited: int | None,
) -> dict[str, Any]:
    start = first + world.warmup_s
    end = start + scenario.window_s
    inside = {cid: [t for t in ts if start <= t < end] for cid, ts in arrivals.items()}
    delivered = sum(len(ts) for ts in inside.values())
    allowed_rate = scenario.channels * world.per_channel_rate
    if world.global_rate is not None:
        allowed_rate = min(allowed_rate, world.global_rate)
    # Sustained rate: each channel's messages after its first, over the time they took.
    # (A count over a short window is off by up to one message per channel.)
    achieved = sum(
        (len(ts) - 1) / (ts[-1] - ts[0]) for ts in inside.values() if len(ts) > 1 and ts[-1] > ts[0]
    )
    gaps = sorted(b - a for ts in inside.values() for a, b in itertools.pairwise(ts))
    starts = sorted(ts[0] - first for ts in arrivals.values() if ts)
    sends = sorted(chat.send_s)
    window_requests = [t for t in requests if start <= t < end]
    return {
        "channels": scenario.channels,
        "window_s": scenario.window_s,
        "queued": queued,
        "allowed_per_s": allowed_rate,
        "achieved_per_s": achieved,
        "delivered": delivered,
        "ratio": achieved / allowed_rate,
        "rate_limited": limited,
        "global_excess": (
            over_limit(requests, world.global_rate) if world.global_rate is not None else None
        ),
        "peak_requests_1s": peak_in(window_requests, 1.0) if window_requests else None,
        "peak_channel_1s": max((peak_in(ts, 1.0) for ts in arrivals.values() if ts), default=0),
        "peak_channel_5s": max((peak_in(ts, 5.0) for ts in arrivals.values() if ts), default=0),
        "period_mean_ms": statistics.fmean(gaps) * 1000 if gaps else math.nan,
        "period_p99_ms": percentile(gaps, 0.99) * 1000,
        "lane_ratio": (1 / statistics.fmean(gaps)) / world.per_channel_rate if gaps else math.nan,
        "send_p50_ms": percentile(sends, 0.5) * 1000,
        "send_p99_ms": percentile(sends, 0.99) * 1000,
        "last_lane_start_ms": starts[-1] * 1000 if starts else math.nan,
        "send_failures": chat.failures,
        "min_interval_s": chat.min_interval_s,
    }


# --- orchestration -------------------------------------------------------------------


def run(*, quick: bool = False) -> list[Result]:
    """Every platform's scenarios as result rows; Slack only when its plugin is ready."""
    results: list[Result] = []
    slack_missing: str | None = None
    for scenario in QUICK if quick else FULL:
        if scenario.platform == "slack":
            if slack_missing is None:
                slack_missing = slack_ready()
            if slack_missing:
                log(f"Slack not measured: {slack_missing}")
                continue
        log(
            f"{scenario.key}: {scenario.channels} channels, full outbox, "
            f"{scenario.window_s:.0f} s window"
        )
        with tempfile.TemporaryDirectory(prefix="starling-bench-delivery-") as tmp:
            figures = asyncio.run(measure(scenario, Path(tmp)))
        log(
            f"{scenario.key}: {figures['achieved_per_s']:.2f} of "
            f"{figures['allowed_per_s']:.0f} msg/s (ratio {figures['ratio']:.3f}), "
            f"429s {figures['rate_limited']}, lane period {figures['period_mean_ms']:.0f} ms, "
            f"send p50 {figures['send_p50_ms']:.1f} ms"
        )
        results += _rows(scenario, figures)
    return results


def _rows(scenario: Scenario, f: dict[str, Any]) -> list[Result]:
    name = f"{BENCH}/{scenario.key}"

    def row(metric: str, key: str, unit: str, label: str, target: Target | None = None) -> Result:
        return Result(name, metric, f[key], unit, target=target, label=label)

    enforced = f["rate_limited"] is not None
    rows = [
        row("channels", "channels", "count", "channels, outbox full"),
        row("window_s", "window_s", "s", "measured window"),
        row("allowed_per_s", "allowed_per_s", "1/s", "allowed message rate"),
        row("delivered", "delivered", "count", "messages accepted in the window"),
        row("achieved_per_s", "achieved_per_s", "1/s", "achieved message rate (sustained)"),
        row("ratio", "ratio", "ratio", "achieved / allowed", Target(">=", 0.95)),
        row(
            "rate_limited_429",
            "rate_limited",
            "count",
            "429s from the fake" if enforced else "429s (fake enforces no limit)",
            Target("<=", 0) if enforced else None,
        ),
    ]
    if f["global_excess"] is not None:
        global_label = f"requests over {DISCORD_GLOBAL_PER_S:.0f}/s global (log check)"
        rows += [
            row("over_global_limit", "global_excess", "count", global_label, Target("<=", 0)),
            row("peak_requests_1s", "peak_requests_1s", "count", "peak requests in any 1 s"),
        ]
    pacing = f"lane period, mean (pacing {f['min_interval_s']:g} s)"
    rows += [
        row("peak_channel_1s", "peak_channel_1s", "count", "peak messages in 1 s, one channel"),
        # Discord's buckets reset at fixed times, so 6 in a sliding 5 s can be within them.
        row("peak_channel_5s", "peak_channel_5s", "count", "peak messages in 5 s, one channel"),
        row("lane_period_ms", "period_mean_ms", "ms", pacing),
        row("lane_period_p99_ms", "period_p99_ms", "ms", "lane period, p99"),
        row("lane_rate_ratio", "lane_ratio", "ratio", "one lane's steady rate / per-channel limit"),
        row("send_p50_ms", "send_p50_ms", "ms", "chat.send p50"),
        row("send_p99_ms", "send_p99_ms", "ms", "chat.send p99"),
        row("last_lane_start_ms", "last_lane_start_ms", "ms", "last lane's first message, delay"),
    ]
    return rows
