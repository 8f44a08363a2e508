"""A whole Starling on Discord: members run slash commands, posts arrive as embeds.

The real App (feeds network, SQLite) runs with the Discord chat built by its
plugin factory; the real discord.py client talks to the local Discord over REST
and the gateway. Interactions arrive as Discord sends them; the tests read what
members would see.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.app import App
from bot.clock import SystemClock
from bot.config import load_settings
from bot.errors import Outcome
from bot.model import ChannelRef
from bot.plugins import NETWORK_GROUP, discover
from bot.protocols import HealthRecorder, PluginContext
from plugins.discord import DiscordChat, create
from tests.fakes.discord_server import (
    FORUM,
    MEMBER,
    MODERATOR,
    Channel,
    DiscordServer,
    Guild,
)
from tests.feedserver import FeedServer

THREE_SECONDS = 3.0


def visible(text: str) -> str:
    """The text as a member reads it: zero-width characters do not show."""
    return text.replace("\u200b", "").replace("\u2060", "")


class LateHealth:
    """The app's health book exists only once the app does; the chat is built first."""

    def __init__(self) -> None:
        self.target: HealthRecorder | None = None

    def record(self, *args: Any, **kwargs: Any) -> None:
        if self.target is not None:
            self.target.record(*args, **kwargs)


@dataclass
class DiscordBot:
    app: App
    chat: DiscordChat
    task: asyncio.Task[None]

    async def poll_all(self) -> None:
        for state in list(self.app.scheduler.states.values()):
            await self.app.relay.poll(state)
        await self.app.dispatcher.drain()

    def subscriptions(self, channel: Channel) -> Awaitable[list[Any]]:
        return self.app.store.list_subscriptions(ChannelRef("discord", channel.id, channel.name))


StartBot = Callable[..., Awaitable[DiscordBot]]


@pytest_asyncio.fixture
async def discord_server() -> AsyncIterator[DiscordServer]:
    async with DiscordServer(bucket_window_s=0.5) as server:
        yield server
    # Every answer the fake gave matched Discord's published schemas, and so did
    # every body Starling sent.
    assert server.invalid_responses == [], server.invalid_responses[:3]
    assert server.invalid_bodies == [], server.invalid_bodies[:3]


@pytest.fixture
def guild(discord_server: DiscordServer) -> Guild:
    return discord_server.add_guild("Team")


@pytest.fixture
def general(discord_server: DiscordServer, guild: Guild) -> Channel:
    return discord_server.add_channel(guild, "general")


@pytest_asyncio.fixture
async def start_bot(
    tmp_path: Path, discord_server: DiscordServer, guild: Guild
) -> AsyncIterator[StartBot]:
    running: list[DiscordBot] = []

    async def start(public_confirmations: bool = False, **discord_options: Any) -> DiscordBot:
        health = LateHealth()
        chat = create(
            PluginContext(
                name="discord",
                config={
                    "token": discord_server.token,
                    "api_url": discord_server.api_url,
                    "guild_ids": guild.id,
                    "min_interval_s": "0",
                    **discord_options,
                },
                health=health,
                clock=SystemClock(),
                allow_private_addresses=True,
                data_dir=str(tmp_path),
            )
        )
        # Only the feeds network: the other plugins are not what these tests are about.
        others = {name: {"enabled": False} for name in discover(NETWORK_GROUP) if name != "feeds"}
        settings = load_settings(
            data_dir=tmp_path / "data",
            allow_private_addresses=True,
            public_confirmations=public_confirmations,
            min_interval_s=0.1,
            jitter=0.0,
            health_flush_s=0.5,
            shutdown_grace_s=5.0,
            **others,
        )
        app = await App.create(settings, chats={"discord": chat})
        health.target = app.health
        bot = DiscordBot(app, chat, asyncio.create_task(app.run()))
        running.append(bot)
        await discord_server.wait_connected()
        return bot

    yield start
    for bot in running:
        bot.app.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(bot.task, 30)


def opt(name: str, value: Any, kind: int = 3, *, focused: bool = False) -> dict[str, Any]:
    option: dict[str, Any] = {"name": name, "type": kind, "value": value}
    if focused:
        option["focused"] = True
    return option


async def follow(
    server: DiscordServer, channel: Channel, url: str, *extra: dict[str, Any]
) -> tuple[str, bool]:
    log = await server.invoke(
        channel, "follow", [opt("network", "feeds"), opt("target", url), *extra]
    )
    await log.answer(within_s=THREE_SECONDS)
    (shown,) = await log.wait_shown()
    return shown


# --- commands -----------------------------------------------------------------------------


async def test_follow_is_answered_within_three_seconds_and_posts_follow(
    discord_server: DiscordServer, feed_server: FeedServer, start_bot: StartBot, general: Channel
) -> None:
    feed = feed_server.add_feed("news")
    feed.add_item(title="Old news")
    bot = await start_bot()

    log = await discord_server.invoke(
        general, "follow", [opt("network", "feeds"), opt("target", feed_server.feed_url("news"))]
    )
    answer = await log.answer(within_s=THREE_SECONDS)
    assert log.first_answer_after_s < THREE_SECONDS
    assert answer["type"] == 4
    text, ephemeral = (await log.wait_shown())[0]
    assert text.startswith("Following ")
    assert "as \\#1" in text
    assert ephemeral, "a new follow is confirmed to the member who asked"
    assert answer["data"]["allowed_mentions"] == {"parse": []}

    feed.add_item(title="Fresh @everyone news", content="<p>Hello <b>team</b> @here</p>")
    await bot.poll_all()
    posts = [m for m in discord_server.messages_in(general) if m["embeds"]]
    assert len(posts) == 1, "history must not flood the channel; only the new item"
    (embed,) = posts[0]["embeds"]
    assert visible(embed["title"]) == "Fresh @everyone news"
    assert "@everyone" not in embed["title"]
    assert visible(embed["description"]) == "Hello team @here"
    assert "@here" not in embed["description"]
    assert posts[0]["allowed_mentions"]["parse"] == []
    assert embed["footer"]["text"].startswith("feeds · ")
    assert discord_server.invalid_bodies == []


async def test_commands_are_registered_for_the_guild_with_the_right_permissions(
    discord_server: DiscordServer, start_bot: StartBot, guild: Guild
) -> None:
    await start_bot()
    assert None not in discord_server.commands, "guild_ids given: nothing registered globally"
    commands = {c["name"]: c for c in discord_server.commands[guild.id]}
    assert set(commands) == {
        "follow", "search", "unfollow", "list", "status", "help",
        "post", "approve", "reject", "undo", "accounts",
        "Post a reply from Starling", "Quote on…",
    }  # fmt: skip
    for name in ("follow", "search", "unfollow"):
        assert commands[name]["default_member_permissions"] == "16"  # Manage Channels
    for name in ("list", "status", "help", "post", "approve", "reject", "undo", "accounts"):
        assert commands[name]["default_member_permissions"] is None
    assert all(c["dm_permission"] is False for c in commands.values())
    (identify,) = discord_server.identifies
    assert identify["intents"] == 1, "only the non-privileged guilds intent"
    assert discord_server.heartbeats >= 1, "discord.py beats right after HELLO; we ACK"
    assert discord_server.gateway_queries[0] == {
        "v": "10",
        "encoding": "json",
        "compress": "zlib-stream",
    }


async def test_search_reaches_the_core_as_search_with_the_same_options_as_follow(
    discord_server: DiscordServer, start_bot: StartBot, general: Channel
) -> None:
    await start_bot()
    commands = {c["name"]: c for c in discord_server.commands[general.guild_id]}
    assert commands["search"]["options"] == commands["follow"]["options"]
    log = await discord_server.invoke(
        general, "search", [opt("network", "feeds"), opt("target", "python")]
    )
    ((text, ephemeral),) = await log.wait_shown()
    assert text.startswith("/search: feeds cannot be searched"), text
    assert ephemeral


async def test_members_without_manage_channels_are_not_offered_follow(
    discord_server: DiscordServer, start_bot: StartBot, general: Channel
) -> None:
    await start_bot(manage_permission="manage_guild")
    with pytest.raises(PermissionError):
        await discord_server.invoke(general, "follow", [], permissions=MODERATOR)
    log = await discord_server.invoke(general, "help", [], permissions=MEMBER)
    ((text, ephemeral),) = await log.wait_shown()
    assert "/follow" in text
    assert ephemeral


async def test_autocomplete_offers_networks_and_subscriptions(
    discord_server: DiscordServer, feed_server: FeedServer, start_bot: StartBot, general: Channel
) -> None:
    feed_server.add_feed("news")
    await start_bot()
    choices = await discord_server.autocomplete(
        general, "follow", [opt("network", "fe", focused=True)]
    )
    assert choices == [{"name": "feeds", "value": "feeds"}]
    assert (
        await discord_server.autocomplete(general, "follow", [opt("network", "zz", focused=True)])
        == []
    )

    await follow(discord_server, general, feed_server.feed_url("news"))
    (choice,) = await discord_server.autocomplete(
        general, "unfollow", [opt("id", "", focused=True)]
    )
    assert choice["value"] == "1"
    assert choice["name"].startswith("#1 feeds follow")


async def test_list_is_private_and_unfollow_is_public(
    discord_server: DiscordServer, feed_server: FeedServer, start_bot: StartBot, general: Channel
) -> None:
    feed_server.add_feed("news")
    bot = await start_bot()
    await follow(discord_server, general, feed_server.feed_url("news"), opt("every", "10m"))

    listing = await discord_server.invoke(general, "list", [], permissions=MEMBER)
    ((text, ephemeral),) = await listing.wait_shown()
    assert ephemeral
    assert "\\#1 feeds follow" in text
    assert "every 10 min" in text

    stop = await discord_server.invoke(general, "unfollow", [opt("id", "1")])
    ((text, ephemeral),) = await stop.wait_shown()
    assert text.startswith("Stopped \\#1")
    assert ephemeral
    assert await bot.subscriptions(general) == []


async def test_a_wrong_command_gets_one_private_line_and_changes_nothing(
    discord_server: DiscordServer, start_bot: StartBot, general: Channel
) -> None:
    bot = await start_bot()
    log = await discord_server.invoke(
        general, "follow", [opt("network", "nosuch"), opt("target", "x")]
    )
    ((text, ephemeral),) = await log.wait_shown()
    assert ephemeral
    assert text.startswith("/follow: unknown network")
    assert "\n" not in text
    assert await bot.subscriptions(general) == []


async def test_a_slow_follow_is_deferred_in_time_then_answered(
    discord_server: DiscordServer, feed_server: FeedServer, start_bot: StartBot, general: Channel
) -> None:
    feed_server.add_feed("slowpoke")
    await start_bot(public_confirmations=True)
    log = await discord_server.invoke(
        general,
        "follow",
        [opt("network", "feeds"), opt("target", feed_server.url("/slow/2.2/slowpoke"))],
    )
    first = await log.answer(within_s=THREE_SECONDS)
    assert first["type"] == 5, "a command still working after 1.5 s is deferred"
    assert log.first_answer_after_s < 2.0
    ((text, ephemeral),) = await log.wait_shown(within_s=10)
    assert text.startswith("Following ")
    assert not ephemeral
    assert log.original_deleted, "the private 'thinking…' gives way to the public answer"
    assert [m["content"] for m in discord_server.messages_in(general)] == [text]


async def test_a_slow_mistake_is_deferred_then_answered_privately(
    discord_server: DiscordServer, feed_server: FeedServer, start_bot: StartBot, general: Channel
) -> None:
    bot = await start_bot()
    log = await discord_server.invoke(
        general,
        "follow",
        [opt("network", "feeds"), opt("target", feed_server.url("/slow/2.2/missing"))],
    )
    assert (await log.answer(within_s=THREE_SECONDS))["type"] == 5
    ((text, ephemeral),) = await log.wait_shown(within_s=10)
    assert ephemeral
    assert text.startswith("/follow: ")
    assert "404" in text
    assert not log.original_deleted, "the private 'thinking…' message becomes the answer"
    assert discord_server.messages_in(general) == []
    assert await bot.subscriptions(general) == []


async def test_follow_into_a_forum_creates_a_post_per_item(
    discord_server: DiscordServer,
    feed_server: FeedServer,
    start_bot: StartBot,
    general: Channel,
    guild: Guild,
) -> None:
    forum = discord_server.add_channel(guild, "releases", kind=FORUM)
    feed = feed_server.add_feed("news")
    bot = await start_bot()
    option, resolved = discord_server.channel_option("channel", forum, MODERATOR)
    log = await discord_server.invoke(
        general,
        "follow",
        [opt("network", "feeds"), opt("target", feed_server.feed_url("news")), option],
        resolved=resolved,
    )
    ((text, _),) = await log.wait_shown()
    assert text.startswith("Following ")
    assert len(await bot.subscriptions(forum)) == 1
    assert await bot.subscriptions(general) == []

    feed.add_item(title="Release 1.0")
    await bot.poll_all()
    posts = [c for c in discord_server.channels.values() if c.parent_id == forum.id]
    assert [p.name for p in posts] == ["Release 1.0"]


async def test_following_into_a_channel_you_cannot_manage_is_refused(
    discord_server: DiscordServer,
    feed_server: FeedServer,
    start_bot: StartBot,
    general: Channel,
    guild: Guild,
) -> None:
    elsewhere = discord_server.add_channel(guild, "announcements")
    feed_server.add_feed("news")
    bot = await start_bot()
    option, resolved = discord_server.channel_option("channel", elsewhere, MEMBER)
    log = await discord_server.invoke(
        general,
        "follow",
        [opt("network", "feeds"), opt("target", feed_server.feed_url("news")), option],
        resolved=resolved,
    )
    ((text, ephemeral),) = await log.wait_shown()
    assert ephemeral
    assert "Manage Channels" in text
    assert "announcements" in text
    assert await bot.subscriptions(elsewhere) == []


# --- delivery under pressure --------------------------------------------------------------


async def test_a_429_storm_delays_delivery_but_loses_nothing(
    discord_server: DiscordServer, feed_server: FeedServer, start_bot: StartBot, general: Channel
) -> None:
    feed = feed_server.add_feed("news")
    bot = await start_bot()
    await follow(discord_server, general, feed_server.feed_url("news"))
    for n in range(4):
        feed.add_item(title=f"Item {n}")
    # More 429s in a row than discord.py retries: the outbox defers and retries later.
    discord_server.rate_limit_next(7, retry_after=0.1)
    discord_server.rate_limit_next(1, retry_after=0.2, global_=True)
    state = next(iter(bot.app.scheduler.states.values()))
    await bot.app.relay.poll(state)

    async with asyncio.timeout(20):
        while await bot.app.store.outbox_depth():
            await asyncio.sleep(0.05)
    titles = [m["embeds"][0]["title"] for m in discord_server.messages_in(general) if m["embeds"]]
    assert titles == ["Item 0", "Item 1", "Item 2", "Item 3"]
    statuses = [r.status for r in discord_server.calls("POST", rf"/channels/{general.id}/messages")]
    assert statuses.count(429) == 8
    host = bot.app.health.hosts[("chat:discord", "127.0.0.1")]
    assert host.counts[Outcome.RATE_LIMITED] == 8


async def test_a_deleted_channel_pauses_its_subscription_while_others_flow(
    discord_server: DiscordServer,
    feed_server: FeedServer,
    start_bot: StartBot,
    general: Channel,
    guild: Guild,
) -> None:
    other = discord_server.add_channel(guild, "other")
    feed = feed_server.add_feed("news")
    bot = await start_bot()
    await follow(discord_server, general, feed_server.feed_url("news"))
    await follow(discord_server, other, feed_server.feed_url("news"))
    discord_server.delete_channel(general)

    feed.add_item(title="After the deletion")
    await bot.poll_all()
    feed.add_item(title="And later")
    await bot.poll_all()

    assert [m["embeds"][0]["title"] for m in discord_server.messages_in(other) if m["embeds"]] == [
        "After the deletion",
        "And later",
    ]
    (paused,) = await bot.subscriptions(general)
    assert "10003 Unknown Channel" in paused.paused_reason
    (flowing,) = await bot.subscriptions(other)
    assert flowing.paused_reason == ""


async def test_a_lost_answer_is_not_posted_twice(
    discord_server: DiscordServer, feed_server: FeedServer, start_bot: StartBot, general: Channel
) -> None:
    feed = feed_server.add_feed("news")
    bot = await start_bot(use_webhooks="true")
    await follow(discord_server, general, feed_server.feed_url("news"))
    discord_server.fail_next(1, status=502, after_storing=True)
    feed.add_item(title="Stored, but the answer was lost")
    await bot.app.relay.poll(next(iter(bot.app.scheduler.states.values())))
    async with asyncio.timeout(15):
        while await bot.app.store.outbox_depth():
            await asyncio.sleep(0.05)
    posts = [m for m in discord_server.messages_in(general) if m["embeds"]]
    assert [m["embeds"][0]["title"] for m in posts] == ["Stored, but the answer was lost"]
    assert posts[0]["webhook_id"], "posted through the channel webhook"


async def test_an_edited_item_is_edited_in_place(
    discord_server: DiscordServer, feed_server: FeedServer, start_bot: StartBot, general: Channel
) -> None:
    feed = feed_server.add_feed("news", kind="atom")
    bot = await start_bot()
    await follow(discord_server, general, feed_server.feed_url("news"))
    item = feed.add_item(title="Original")
    await bot.poll_all()
    feed.update_item(item.guid, title="Original (corrected)", content="<p>changed</p>")
    await bot.poll_all()
    async with asyncio.timeout(5):
        while not discord_server.calls("PATCH", rf"/channels/{general.id}/messages/\d+"):
            await asyncio.sleep(0.02)
    (post,) = [m for m in discord_server.messages_in(general) if m["embeds"]]
    assert post["embeds"][0]["title"] == "Original \\(corrected\\)"
    assert post["edited_timestamp"] is not None


async def test_after_a_gateway_drop_the_session_resumes_and_commands_work(
    discord_server: DiscordServer, start_bot: StartBot, general: Channel
) -> None:
    await start_bot()
    first = discord_server.sessions[0].id
    await discord_server.drop_connections()
    await discord_server.wait_connected(within_s=15)
    assert discord_server.resumes[0]["session_id"] == first
    assert len(discord_server.identifies) == 1, "resumed, not identified afresh"
    log = await discord_server.invoke(general, "status", [], permissions=MEMBER)
    ((text, _),) = await log.wait_shown()
    assert text.startswith("Starling ")
