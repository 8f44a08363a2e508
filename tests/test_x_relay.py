"""X through the whole bot: chat commands in, relayed messages out, nothing mocked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import RunningBot, StartBot
from tests.fakes.x_server import XServer, plugin_config, serving


@pytest_asyncio.fixture
async def x_server() -> AsyncIterator[XServer]:
    async with serving() as server:
        yield server


async def start_with_x(
    start_bot: StartBot, server: XServer, monkeypatch: pytest.MonkeyPatch, **options: Any
) -> RunningBot:
    """A whole Starling whose x plugin is loaded from its entry point, configured by env."""
    for option, value in plugin_config(server, **options).items():
        monkeypatch.setenv(f"STARLING_X__{option.upper()}", str(value))
    return await start_bot()


async def test_new_posts_reach_the_channel_once_with_links_and_images(
    start_bot: StartBot, x_server: XServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = await start_with_x(start_bot, x_server, monkeypatch)
    answer = await bot.say("/follow x https://x.com/Twitter --no-replies --no-reposts")
    assert answer.startswith("Following @Twitter on x as #1")
    await bot.poll_all()
    assert bot.chat.sent == [], "the recorded timeline is the baseline, not news"

    x_server.add_user("alice")
    original = x_server.tweet("alice", "Original thought")
    x_server.tweet(
        "Twitter",
        "Launch notes https://t.co/n1",
        links={"https://t.co/n1": "https://blog.x.com/launch"},
        photos=[("https://pbs.twimg.com/media/launch.jpg", "The launch stage")],
    )
    x_server.tweet("Twitter", "@alice thanks!", reply_to=original["id"])
    x_server.tweet("Twitter", "RT @alice: Original thought", retweet_of=original["id"])
    x_server.tweet("Twitter", "So true", quote_of=original["id"])
    await bot.poll_all()
    await bot.poll_all()

    texts = [s.message.text for s in bot.chat.sent]
    assert texts == [
        "Launch notes https://blog.x.com/launch",
        "So true\n\nQuoting @alice: Original thought",
    ]
    first = bot.chat.sent[0].message
    assert first.author == "Twitter"
    assert first.network == "x"
    assert first.link.startswith("https://x.com/Twitter/status/")
    assert [(i.url, i.alt) for i in first.images] == [
        ("https://pbs.twimg.com/media/launch.jpg", "The launch stage")
    ]


async def test_a_wrong_account_or_search_is_one_line_and_stores_nothing(
    start_bot: StartBot, x_server: XServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = await start_with_x(start_bot, x_server, monkeypatch)
    x_server.add_user("banned")
    x_server.suspend("banned")
    unknown = await bot.say("/follow x @nosuchuser")
    suspended = await bot.say("/follow twitter @banned")
    long_search = await bot.say("/search x " + "word " * 120)
    assert unknown == (
        "/follow: X says: Could not find user with username: [nosuchuser]. "
        "Check the spelling of @nosuchuser."
    )
    assert (
        suspended
        == "/follow: @banned cannot be followed — X says: User has been suspended: [banned]."
    )
    assert long_search.startswith("/search: X search queries may be at most 512 characters")
    assert "No subscriptions" in await bot.say("/list")


async def test_following_when_the_read_cap_is_spent_says_why(
    start_bot: StartBot, x_server: XServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = await start_with_x(start_bot, x_server, monkeypatch, max_reads_per_day=1)
    answer = await bot.say("/follow x @Twitter")
    assert answer.startswith(
        "/follow: could not read @Twitter: the daily cap of 1 X reads is used up"
    )
    assert "No subscriptions" in await bot.say("/list")
    status = await bot.say("/status")
    assert "max_reads_per_day" in status


async def test_x_subscriptions_poll_gently_unless_configured_otherwise(
    start_bot: StartBot, x_server: XServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = await start_with_x(start_bot, x_server, monkeypatch, min_interval_s=900)
    too_often = await bot.say("/follow x @Twitter --every 5m")
    assert too_often == "/follow: --every must be at least 15 min for x"
    answer = await bot.say("/follow x @Twitter")
    assert "(checked every 15 min)" in answer
    status = await bot.say("/status")
    assert "x: 2 of 500 daily reads used" in status
    assert "read at most every 15 min" in status
