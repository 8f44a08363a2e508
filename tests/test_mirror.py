"""Mirror accounts: while a network is down, its posts come from another — once."""

from __future__ import annotations

import contextlib

from bot.clock import SystemClock
from bot.errors import UpstreamError
from bot.health import HealthBook
from bot.protocols import PluginContext
from bot.testing import RecordingChat
from plugins import feeds
from tests.conftest import RunningBot, StartBot
from tests.feedserver import FeedServer


def second_feeds_network(tmp_data: str) -> feeds.FeedsNetwork:
    """The feeds plugin again under another name: a stand-in for "another network"."""
    ctx = PluginContext(
        name="altfeeds", config={}, health=HealthBook(SystemClock()), clock=SystemClock(),
        allow_private_addresses=True, data_dir=tmp_data,
    )  # fmt: skip
    return feeds.create(ctx)


async def _round(bot: RunningBot) -> None:
    for state in list(bot.app.scheduler.states.values()):
        with contextlib.suppress(UpstreamError):
            await bot.app.relay.poll(state)
    await bot.app.dispatcher.drain()
    await bot.app.outages.settle()


def shown(chat: RecordingChat) -> list[tuple[str, str]]:
    return [
        (s.message.title, s.message.footer)
        for s in chat.sent
        if not s.message.title.startswith(("Outage", "Resolved"))
    ]


async def test_mirror_stands_in_during_an_outage_and_nothing_arrives_twice(
    start_bot: StartBot, feed_server: FeedServer, tmp_path: object
) -> None:
    mirror_server = FeedServer()
    await mirror_server.start()
    try:
        primary = feed_server.add_feed("x")
        mirror = mirror_server.add_feed("y")
        chat = RecordingChat()
        bot = await start_bot(
            chat, extra_networks={"altfeeds": second_feeds_network(str(tmp_path))}
        )
        assert "as #1" in await bot.say(f"/follow feeds {feed_server.feed_url('x')}")
        answer = await bot.say(f"/mirror 1 altfeeds {mirror_server.feed_url('y')}")
        assert "as a mirror of #1" in answer
        assert "mirror of #1" in await bot.say("/list")

        for feed in (primary, mirror):
            feed.add_item(title="Calm day", content="<p>All is well today</p>")
        await _round(bot)
        assert shown(chat) == [("Calm day", "")], "the mirror is silent while the primary works"

        await feed_server.stop()
        for _ in range(3):
            await _round(bot)
        for feed in (primary, mirror):
            feed.add_item(title="Storm warning", content="<p>Storm warning https://x.example/1</p>")
        await _round(bot)
        assert shown(chat)[-1] == (
            "Storm warning",
            "via altfeeds, standing in while feeds is down",
        )

        await feed_server.start()
        await _round(bot)
        await _round(bot)
        for feed in (primary, mirror):
            feed.add_item(title="Sunny again", content="<p>Sunny again</p>")
        await _round(bot)
        assert shown(chat) == [
            ("Calm day", ""),
            ("Storm warning", "via altfeeds, standing in while feeds is down"),
            ("Sunny again", ""),
        ]
    finally:
        await mirror_server.stop()


async def test_mirror_input_errors_are_one_line(
    start_bot: StartBot, feed_server: FeedServer
) -> None:
    feed_server.add_feed("x")
    bot = await start_bot()
    await bot.say(f"/follow feeds {feed_server.feed_url('x')}")
    assert (await bot.say("/mirror 9 feeds http://x")).startswith(
        "/mirror: there is no subscription #9"
    )
    assert "another network" in await bot.say(f"/mirror 1 feeds {feed_server.feed_url('x')}")
    assert (await bot.say("/mirror")).startswith("/mirror: give a subscription id")
    assert (await bot.say("/mirror 1 nosuch @a")).startswith("/mirror: unknown network 'nosuch'")
