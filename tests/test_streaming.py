"""A network that streams: posts pushed by the source reach the channel once."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime

from bot.model import Author, FetchResult, Post, Target, TargetKind
from bot.protocols import PostSink, Publisher, Source
from bot.testing import RecordingChat
from tests.conftest import StartBot


class PushNetwork:
    """The smallest network honouring the plugin contract: a queue of posts to push."""

    name = "push"
    aliases = ()
    description = "test network that streams"
    publisher: Publisher | None = None

    def __init__(self) -> None:
        self.source: Source | None = self
        self.outbox: asyncio.Queue[Post] = asyncio.Queue()
        self.streams_opened: list[list[str]] = []

    async def resolve(self, kind: TargetKind, query: str) -> Target:
        return Target(self.name, kind, query, query)

    async def fetch(self, target: Target, cursor: str | None) -> FetchResult:
        return FetchResult([], cursor)

    async def stream(
        self, targets: list[Target], cursors: Mapping[str, str | None], sink: PostSink
    ) -> None:
        self.streams_opened.append(sorted(t.key for t in targets))
        while True:
            post = await self.outbox.get()
            for target in targets:
                if post.author.handle == target.key:
                    await sink(target, [post], post.native_id)

    async def aclose(self) -> None:
        return None


async def _opened(network: PushNetwork, keys: list[str]) -> None:
    async with asyncio.timeout(5):
        while not network.streams_opened or network.streams_opened[-1] != keys:
            await asyncio.sleep(0.01)


def _post(n: int, author: str) -> Post:
    return Post("push", f"p{n}", Author(author, author), f"post {n}", title=f"Post {n}",
                created_at=datetime.now(UTC))  # fmt: skip


async def test_streamed_posts_arrive_once_and_follows_reopen_the_stream(
    start_bot: StartBot,
) -> None:
    network = PushNetwork()
    chat = RecordingChat()
    bot = await start_bot(chat, extra_networks={"push": network})
    assert "as #1" in await bot.say("/follow push alice")
    assert "as #2" in await bot.say("/follow push bob", channel="other")
    await _opened(network, ["alice", "bob"])

    await network.outbox.put(_post(1, "alice"))
    await network.outbox.put(_post(1, "alice"))  # a duplicate from a second relay
    await network.outbox.put(_post(2, "bob"))
    await chat.wait_for(2)
    await asyncio.sleep(0.1)
    assert [(s.channel.native_id, s.message.title) for s in chat.sent] == [
        ("general", "Post 1"),
        ("other", "Post 2"),
    ]
    await bot.say("/unfollow 2", channel="other")
    await _opened(network, ["alice"])


class CostlyNetwork(PushNetwork):
    """A network whose reads cost money: it asks for gentle polling and reports spend."""

    name = "costly"
    default_interval_s = 900.0
    min_interval_s = 600.0

    def status_lines(self) -> list[str]:
        return ["reads today: 12 of 500"]


async def test_a_network_can_ask_for_gentle_polling_and_add_status_lines(
    start_bot: StartBot,
) -> None:
    bot = await start_bot(RecordingChat(), extra_networks={"costly": CostlyNetwork()})
    too_fast = await bot.say("/follow costly alice --every 1m")
    assert too_fast == "/follow: --every must be at least 10 min for costly"
    assert "(checked every 15 min)" in await bot.say("/follow costly alice")
    assert "  reads today: 12 of 500" in await bot.say("/status")
