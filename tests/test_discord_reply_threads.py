"""Replies on Discord: into the parent's forum post, found again after a crash, and
with webhooks (which cannot send a real reply) a jump link to the parent.

The real discord.py client against the local Discord; each test reads what the
channel (or forum post) shows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from bot.clock import SystemClock
from bot.health import HealthBook
from bot.model import ChannelRef, RichMessage
from bot.protocols import PluginContext
from plugins.discord import DiscordChat, create
from tests.fakes.discord_server import FORUM, Channel, DiscordServer

MakeChat = Callable[..., Awaitable[DiscordChat]]


@pytest_asyncio.fixture
async def discord_server() -> AsyncIterator[DiscordServer]:
    async with DiscordServer(bucket_window_s=0.5) as server:
        yield server
    assert server.invalid_responses == [], server.invalid_responses[:3]
    assert server.invalid_bodies == [], server.invalid_bodies[:3]


@pytest_asyncio.fixture
async def make_chat(discord_server: DiscordServer, tmp_path: Any) -> AsyncIterator[MakeChat]:
    made: list[DiscordChat] = []

    async def make(**options: Any) -> DiscordChat:
        config = {
            "token": discord_server.token,
            "api_url": discord_server.api_url,
            "min_interval_s": "0",
            **options,
        }
        chat = create(
            PluginContext(
                name="discord",
                config=config,
                health=HealthBook(SystemClock()),
                clock=SystemClock(),
                allow_private_addresses=True,
                data_dir=str(tmp_path),
            )
        )
        made.append(chat)
        return chat

    yield make
    for chat in made:
        await chat.aclose()


@pytest.fixture
def forum(discord_server: DiscordServer) -> Channel:
    guild = discord_server.add_guild()
    return discord_server.add_channel(guild, "releases", kind=FORUM)


def post(title: str) -> RichMessage:
    return RichMessage(text=f"{title}, in words", title=title, author="Ada", network="mastodon")


def reply(title: str, parent_ref: str) -> RichMessage:
    return dataclasses.replace(post(title), reply_to="mastodon:1", thread_ref=parent_ref)


def ref(channel: Channel) -> ChannelRef:
    return ChannelRef("discord", channel.id, channel.name)


def posts_in(server: DiscordServer, forum: Channel) -> list[Channel]:
    return [c for c in server.channels.values() if c.parent_id == forum.id]


def titles(server: DiscordServer, channel: Channel) -> list[str]:
    return [m["embeds"][0]["title"] for m in server.messages_in(channel) if m["embeds"]]


@pytest.mark.parametrize("webhooks", ["false", "true"], ids=["bot", "webhook"])
async def test_a_reply_in_an_older_forum_post_is_found_after_a_crash(
    discord_server: DiscordServer, make_chat: MakeChat, forum: Channel, webhooks: str
) -> None:
    before_crash = await make_chat(use_webhooks=webhooks)
    parent = await before_crash.send(ref(forum), post("Parent"), "k-parent")
    for n in range(3):  # newer posts come after the parent's
        await before_crash.send(ref(forum), post(f"Newer {n}"), f"k-newer-{n}")
    sent = await before_crash.send(ref(forum), reply("The reply", parent), "k-reply")

    first, *newer = posts_in(discord_server, forum)
    assert len(newer) == 3, "the reply made no forum post of its own"
    assert titles(discord_server, first) == ["Parent", "The reply"]

    after_restart = await make_chat(use_webhooks=webhooks)
    assert await after_restart.find_sent(ref(forum), "k-reply") == sent
    assert await after_restart.find_sent(ref(forum), "k-parent") == parent
    assert await after_restart.find_sent(ref(forum), "k-never") is None


async def test_a_webhook_reply_links_to_its_parent(
    discord_server: DiscordServer, make_chat: MakeChat
) -> None:
    guild = discord_server.add_guild()
    general = discord_server.add_channel(guild, "general")
    chat = await make_chat(use_webhooks="true")
    parent = await chat.send(ref(general), post("Parent"), "k-parent")
    await chat.send(ref(general), reply("The reply", parent), "k-reply")
    await chat.send(ref(general), post("Unrelated"), "k-other")

    first, answer, other = discord_server.messages_in(general)
    link = f"https://discord.com/channels/{guild.id}/{general.id}/{first['id']}"
    assert answer["content"] == f"\u21aa Reply to {link}"
    assert answer["webhook_id"]
    assert "message_reference" not in answer
    assert other["content"] == ""
    assert await (await make_chat(use_webhooks="true")).find_sent(ref(general), "k-reply")
