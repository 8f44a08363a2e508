"""Upstream outages as a channel sees them, message by message."""

from __future__ import annotations

import asyncio
import contextlib

from bot.errors import UpstreamError
from bot.testing import FakeClock, RecordingChat
from tests.conftest import RunningBot, StartBot
from tests.feedserver import FeedServer


def notices(chat: RecordingChat, channel: str) -> list[str]:
    """Every outage message in a channel, each as its latest text."""
    return [
        (s.edits[-1] if s.edits else s.message).text
        for s in chat.in_channel(channel)
        if s.message.title.startswith("Outage")
    ]


async def _fail_polls(bot: RunningBot, times: int) -> None:
    for _ in range(times):
        await bot.poll_all_tolerant()
    await bot.app.outages.settle()


async def test_outage_announced_once_updated_in_place_and_resolved(
    start_bot: StartBot, feed_server: FeedServer
) -> None:
    clock = FakeClock()
    chat = RecordingChat()
    for name in ("a", "b", "c"):
        feed_server.add_feed(name).add_item()
    bot = await start_bot(chat, clock=clock)
    await bot.say(f"/follow feeds {feed_server.feed_url('a')}", channel="alpha")
    await bot.say(f"/follow feeds {feed_server.feed_url('b')}", channel="alpha")
    await bot.say(f"/follow feeds {feed_server.feed_url('c')}", channel="beta")
    await bot.poll_all()

    await feed_server.stop()  # the host now refuses connections
    first = next(iter(bot.app.scheduler.states.values()))
    with contextlib.suppress(UpstreamError):
        await bot.app.relay.poll(first)
    await bot.app.outages.settle()
    assert notices(chat, "alpha") == [], "one failed request is not an outage"
    await _fail_polls(bot, 1)
    alpha = notices(chat, "alpha")
    assert len(alpha) == 1
    assert "127.0.0.1 (feeds) is not answering since 14:02 UTC" in alpha[0]
    assert "(2 follows here affected)" in alpha[0]
    assert "(1 follow here affected)" in notices(chat, "beta")[0]

    clock.advance(minutes=25)
    await _fail_polls(bot, 3)
    await bot.app.outages.refresh()
    alpha = notices(chat, "alpha")
    assert len(alpha) == 1, "updates edit the announcement, never add messages"
    assert "25 min so far" in alpha[0]
    assert "/status" not in alpha[0]
    status = await bot.say("/status")
    assert "127.0.0.1 down" in status
    assert "down since 14:02 UTC, ongoing" in status

    # A restart in the middle of the outage neither repeats nor forgets it.
    await bot.stop()
    bot = await start_bot(chat, clock=clock)
    await _fail_polls(bot, 3)
    assert len(notices(chat, "alpha")) == 1

    # Back, with three posts missed meanwhile.
    feed = feed_server.feeds["a"]
    for n in range(3):
        feed.add_item(title=f"Missed {n}")
    clock.advance(minutes=17)
    await feed_server.start()
    await bot.app.relay.poll(next(iter(bot.app.scheduler.states.values())))
    await bot.app.outages.settle()
    assert "answering again" in notices(chat, "alpha")[0]
    await bot.poll_all()
    await bot.app.outages.settle()
    final = notices(chat, "alpha")
    assert final == [final[0]]
    assert "is back: resolved after 42 min; 3 posts caught up." in final[0]
    assert "resolved after 42 min" in notices(chat, "beta")[0]
    titles = [s.message.title for s in chat.in_channel("alpha")]
    assert sorted(t for t in titles if t.startswith("Missed")) == [
        "Missed 0",
        "Missed 1",
        "Missed 2",
    ]
    assert "lasted 42 min, 3 posts caught up" in await bot.say("/status")


async def test_a_host_that_stops_answering_is_an_outage_of_timeouts(
    start_bot: StartBot, feed_server: FeedServer
) -> None:
    clock = FakeClock()
    chat = RecordingChat()
    feed = feed_server.add_feed("slow")
    feed.add_item()
    bot = await start_bot(chat, clock=clock, feeds={"timeout_s": 0.3})
    await bot.say(f"/follow feeds {feed_server.feed_url('slow')}", channel="alpha")
    await bot.poll_all()

    feed_server.hang_s = 5.0  # connections are accepted, answers never come in time
    await _fail_polls(bot, 3)
    [notice] = notices(chat, "alpha")
    assert "127.0.0.1 (feeds) is not answering since 14:02 UTC" in notice
    assert "(1 follow here affected)" in notice
    assert "Last error: 127.0.0.1 did not answer within 0.3 s." in notice

    feed_server.hang_s = 0.0
    feed.add_item(title="Written while it hung")
    clock.advance(minutes=8)
    await bot.poll_all()
    await bot.poll_all()
    await bot.app.outages.settle()
    [final] = notices(chat, "alpha")
    assert "is back: resolved after 8 min; 1 post caught up." in final
    titles = [s.message.title for s in chat.in_channel("alpha")]
    assert titles.count("Written while it hung") == 1


async def test_a_broken_feed_is_not_an_outage(start_bot: StartBot, feed_server: FeedServer) -> None:
    chat = RecordingChat()
    feed_server.add_feed("gone").add_item()
    bot = await start_bot(chat)
    await bot.say(f"/follow feeds {feed_server.feed_url('gone')}")
    del feed_server.feeds["gone"]  # 404: this feed is broken, the host is fine
    await _fail_polls(bot, 6)
    assert notices(chat, "general") == []


async def test_quiet_channels_hear_nothing(start_bot: StartBot, feed_server: FeedServer) -> None:
    chat = RecordingChat()
    feed_server.add_feed("a").add_item()
    bot = await start_bot(chat, outage_quiet_channels=["hush"])
    await bot.say(f"/follow feeds {feed_server.feed_url('a')}", channel="hush")
    await bot.say(f"/follow feeds {feed_server.feed_url('a')}", channel="loud")
    await feed_server.stop()
    await _fail_polls(bot, 3)
    assert notices(chat, "hush") == []
    assert len(notices(chat, "loud")) == 1


async def test_a_failing_chat_platform_is_told_on_another_and_loses_nothing(
    start_bot: StartBot, feed_server: FeedServer
) -> None:
    from bot.errors import ChatError

    chat = RecordingChat("team")
    ops = RecordingChat("ops")
    feed = feed_server.add_feed("a")
    bot = await start_bot(chat, extra_chats=[ops], ops_channels=["ops:control", "team:x"])
    await bot.say(f"/follow feeds {feed_server.feed_url('a')}")
    chat.fail_with = ChatError("team chat answered 503")
    for n in range(4):
        feed.add_item(title=f"Waiting {n}")
        await bot.app.relay.poll(next(iter(bot.app.scheduler.states.values())))
        await asyncio.sleep(0.05)
    async with asyncio.timeout(20):
        while not ops.in_channel("control"):
            await asyncio.sleep(0.05)
            await bot.app.outages.settle()
    notice = ops.in_channel("control")[0].message.text
    assert "Chat platform team is failing since" in notice
    assert "wait in the outbox (1 follows there)" in notice
    assert chat.sent == []
    status = await bot.say("/status")
    assert "chat team: " in status
    assert "failed sends in a row" in status

    chat.fail_with = None
    await chat.wait_for(1, within_s=20)
    async with asyncio.timeout(20):
        while not ops.in_channel("control")[0].edits:
            await asyncio.sleep(0.05)
            await bot.app.outages.settle()
    assert "is back" in ops.in_channel("control")[0].edits[-1].text
    await bot.app.dispatcher.drain()
    titles = sorted(
        line
        for s in chat.sent
        for line in (s.message.title + "\n" + s.message.text).splitlines()
        if line.startswith(("Waiting", "• "))
    )
    assert len([t for t in titles if "Waiting" in t]) == 4


async def test_quiet_hours_hold_the_announcement_until_they_end(
    start_bot: StartBot, feed_server: FeedServer
) -> None:
    clock = FakeClock()  # 14:02 UTC
    chat = RecordingChat()
    feed_server.add_feed("a").add_item()
    bot = await start_bot(chat, clock=clock, outage_quiet_hours="13:00-15:00")
    await bot.say(f"/follow feeds {feed_server.feed_url('a')}")
    await feed_server.stop()
    await _fail_polls(bot, 3)
    assert notices(chat, "general") == []
    clock.advance(hours=1)
    await bot.app.outages.refresh()
    assert len(notices(chat, "general")) == 1


def test_bad_quiet_hours_are_a_config_error() -> None:
    import pytest

    from bot.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="quiet hours like 22:00-07:00"):
        load_settings(outage_quiet_hours="late")
