"""Measuring seams around a real Starling: a timing `Source` decorator and a recording chat.

Both implement the public protocols (`bot.protocols.Source`, `Network`, `Chat`), so
the app under test is the real one, built from the real plugins; nothing inside
the bot is patched.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from bot.app import App
from bot.clock import SystemClock
from bot.config import Settings
from bot.health import HealthBook
from bot.model import ChannelRef, FetchResult, RichMessage, Target, TargetKind
from bot.plugins import NETWORK_GROUP, discover, load_factory
from bot.protocols import CommandService, Network, PluginContext, Publisher, Source
from bot.store import open_store

# How `bot.render.render_digest` ends each line: "• <headline> — <link>".
DIGEST_LINK_SEPARATOR = " — "


@dataclass(slots=True)
class FetchCounts:
    polls: int = 0  # fetches that returned (200 or 304)
    not_modified: int = 0
    documents: int = 0  # fetches that returned a document (200)
    posts: int = 0  # posts in those documents
    errors: int = 0  # fetches that raised


class TimedSource:
    """Wraps a `Source`; notes when each post was first returned by a fetch.

    `fetched_at[permalink]` is `time.perf_counter()` right after the fetch that
    first returned the post completed (HTTP, decode and parse done), which is where
    the latency to the chat send starts. Posts are keyed by permalink because that
    is what reaches the chat both in a single message and in a digest line (every
    synthetic feed item has its own). Only fetches made while `recording` count.
    """

    def __init__(self, inner: Source) -> None:
        self.inner = inner
        self.recording = False
        self.counts = FetchCounts()
        self.fetched_at: dict[str, float] = {}

    async def resolve(self, kind: TargetKind, query: str) -> Target:
        return await self.inner.resolve(kind, query)

    async def fetch(self, target: Target, cursor: str | None) -> FetchResult:
        counts = self.counts
        try:
            result = await self.inner.fetch(target, cursor)
        except Exception:
            counts.errors += 1
            raise
        now = time.perf_counter()
        counts.polls += 1
        if result.not_modified:
            counts.not_modified += 1
        else:
            counts.documents += 1
            counts.posts += len(result.posts)
            if self.recording:
                seen = self.fetched_at
                for post in result.posts:
                    if post.permalink:  # placeholders for known posts have none
                        seen.setdefault(post.permalink, now)
        return result


class TimedNetwork:
    """A `Network` that is the wrapped plugin's, with its source behind `TimedSource`."""

    def __init__(self, inner: Network) -> None:
        if inner.source is None:
            raise ValueError(f"network {inner.name} has no source to time")
        self.inner = inner
        self.name = inner.name
        self.aliases = inner.aliases
        self.description = inner.description
        self.timed = TimedSource(inner.source)
        self.source: Source | None = self.timed
        self.publisher: Publisher | None = inner.publisher

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass(frozen=True, slots=True)
class Send:
    at: float  # time.perf_counter() when the chat was asked to send
    key: str  # the idempotency key
    links: tuple[str, ...]  # the permalink of each post the message carries
    # time.time() at the same moment: compares with a time another process noted, such
    # as a feed server's publish time (wall clock, since it is written into the feed)
    wall: float = 0.0


class BenchChat:
    """A `Chat` that records every send with its `time.perf_counter()`, and nothing else."""

    def __init__(self, name: str = "bench") -> None:
        self.name = name
        self.min_interval_s = 0.0
        self.sends: list[Send] = []
        self._closed = asyncio.Event()

    @staticmethod
    def links(message: RichMessage) -> tuple[str, ...]:
        """The posts a message carries: its own link, or one per digest line."""
        if message.link:
            return (message.link,)
        return tuple(
            line.rsplit(DIGEST_LINK_SEPARATOR, 1)[1]
            for line in message.text.split("\n")
            if DIGEST_LINK_SEPARATOR in line
        )

    def channel(self, name: str) -> ChannelRef:
        return ChannelRef(self.name, name, name)

    async def run(self, commands: CommandService) -> None:
        await self._closed.wait()

    async def send(self, channel: ChannelRef, message: RichMessage, key: str) -> str:
        self.sends.append(Send(time.perf_counter(), key, self.links(message), time.time()))
        return f"{channel.native_id}:{len(self.sends)}"

    async def edit(self, channel: ChannelRef, message_ref: str, message: RichMessage) -> None:
        return None

    async def find_sent(self, channel: ChannelRef, key: str) -> str | None:
        return None

    async def aclose(self) -> None:
        self._closed.set()


async def build_app(settings: Settings, chat: BenchChat, *, network: str = "feeds") -> App:
    """The real App with the real `network` plugin, loaded through its entry point.

    Like `App.create`, except that the network is wrapped in `TimedNetwork` before
    the App wires its relay (the App takes its sources at construction).
    """
    clock = SystemClock()
    health = HealthBook(clock)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    entry = discover(NETWORK_GROUP).get(network)
    if entry is None:
        raise RuntimeError(f"the {network} plugin is not installed (pip install -e .)")
    context = PluginContext(
        name=network,
        config=settings.plugin_config(network),
        health=health,
        clock=clock,
        allow_private_addresses=settings.allow_private_addresses,
        data_dir=str(settings.data_dir),
    )
    plugin: Network = load_factory(entry)(context)
    store = await open_store(settings.db_path)
    return App(settings, store, {network: TimedNetwork(plugin)}, {chat.name: chat}, clock, health)


def timed_source(app: App, network: str = "feeds") -> TimedSource:
    wrapped = app.networks[network]
    assert isinstance(wrapped, TimedNetwork)
    return wrapped.timed
