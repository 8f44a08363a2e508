"""Discord's standing limits and crash recovery in a busy channel, against the local Discord.

The fake enforces the global limit (50 bot-token requests in any second) on its
own; Starling spaces its requests so it never meets it. `find_sent` pages back
through a channel where others kept talking after the crash.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio

from bot.clock import SystemClock
from bot.health import HealthBook
from bot.model import ChannelRef, RichMessage
from bot.protocols import PluginContext
from plugins.discord import DiscordChat, create
from plugins.discord.chat import FIND_PAGES
from tests.fakes.discord_server import Channel, DiscordServer

MEMBER = {
    "id": "4321",
    "username": "chatty",
    "discriminator": "0",
    "avatar": None,
    "global_name": None,
    "public_flags": 0,
    "flags": 0,
    "primary_guild": None,
}


@pytest_asyncio.fixture
async def discord_server() -> AsyncIterator[DiscordServer]:
    async with DiscordServer(bucket_window_s=0.5) as server:
        yield server
    assert server.invalid_responses == [], server.invalid_responses[:3]
    assert server.invalid_bodies == [], server.invalid_bodies[:3]


@pytest_asyncio.fixture
async def chats(discord_server: DiscordServer, tmp_path: Any) -> AsyncIterator[list[DiscordChat]]:
    made: list[DiscordChat] = []
    yield made
    for chat in made:
        await chat.aclose()


def make(discord_server: DiscordServer, chats: list[DiscordChat], tmp_path: Any) -> DiscordChat:
    config = {"token": discord_server.token, "api_url": discord_server.api_url}
    chat = create(
        PluginContext(
            name="discord",
            config={**config, "min_interval_s": "0"},
            health=HealthBook(SystemClock()),
            clock=SystemClock(),
            allow_private_addresses=True,
            data_dir=str(tmp_path),
        )
    )
    chats.append(chat)
    return chat


def post(title: str) -> RichMessage:
    return RichMessage(text="What changed.", title=title, author="Blog", network="feeds")


def ref(channel: Channel) -> ChannelRef:
    return ChannelRef("discord", channel.id, channel.name)


def chatter(server: DiscordServer, channel: Channel, count: int) -> None:
    """Members talking in the channel: messages by someone else."""
    for n in range(count):
        channel.messages.append(server._message(channel, {"content": f"hi {n}"}, author=MEMBER))


# --- find_sent in a busy channel ----------------------------------------------------------


async def test_after_a_crash_a_post_is_found_under_hundreds_of_newer_messages(
    discord_server: DiscordServer, chats: list[DiscordChat], tmp_path: Any
) -> None:
    general = discord_server.add_channel(discord_server.add_guild(), "general")
    before_crash = make(discord_server, chats, tmp_path)
    sent = await before_crash.send(ref(general), post("Release"), "starling:1:feeds:a")
    chatter(discord_server, general, 420)  # while Starling was down

    after_restart = make(discord_server, chats, tmp_path)
    assert await after_restart.find_sent(ref(general), "starling:1:feeds:a") == sent
    reads = discord_server.calls("GET", rf"/channels/{general.id}/messages")
    assert [r.query.get("limit") for r in reads] == ["50", "100", "100", "100", "100"]
    assert all("before" in r.query for r in reads[1:])

    # Resent after a wrong "not found" would have shown the post twice; it is one.
    ours = [m for m in discord_server.messages_in(general) if m["author"]["id"] != MEMBER["id"]]
    assert len(ours) == 1


async def test_the_lookup_is_bounded_in_pages(
    discord_server: DiscordServer, chats: list[DiscordChat], tmp_path: Any
) -> None:
    general = discord_server.add_channel(discord_server.add_guild(), "general")
    chatter(discord_server, general, 50 + FIND_PAGES * 100)
    chat = make(discord_server, chats, tmp_path)
    assert await chat.find_sent(ref(general), "starling:1:feeds:never") is None
    reads = discord_server.calls("GET", rf"/channels/{general.id}/messages")
    assert len(reads) == FIND_PAGES


async def test_a_quiet_channel_needs_one_page(
    discord_server: DiscordServer, chats: list[DiscordChat], tmp_path: Any
) -> None:
    general = discord_server.add_channel(discord_server.add_guild(), "general")
    chatter(discord_server, general, 12)
    chat = make(discord_server, chats, tmp_path)
    assert await chat.find_sent(ref(general), "starling:1:feeds:never") is None
    assert len(discord_server.calls("GET", rf"/channels/{general.id}/messages")) == 1


# --- the global limit -------------------------------------------------------------------


async def test_the_fake_answers_the_51st_request_in_a_second_with_a_global_429(
    discord_server: DiscordServer,
) -> None:
    headers = {"Authorization": f"Bot {discord_server.token}"}
    async with aiohttp.ClientSession(headers=headers) as session:

        async def me() -> tuple[int, dict[str, Any], dict[str, str]]:
            async with session.get(discord_server.api_url + "/users/@me") as resp:
                return resp.status, await resp.json(), dict(resp.headers)

        answers = await asyncio.gather(*(me() for _ in range(60)))
    limited = [(body, head) for status, body, head in answers if status == 429]
    assert 1 <= len(limited) <= 10  # 10 unless the burst took longer than a second
    body, head = limited[0]
    assert body["global"] is True
    assert head["X-RateLimit-Global"] == "true"
    assert head["X-RateLimit-Scope"] == "global"


async def test_starling_spaces_a_burst_over_many_channels_under_the_global_limit(
    discord_server: DiscordServer, chats: list[DiscordChat], tmp_path: Any
) -> None:
    guild = discord_server.add_guild()
    channels = [discord_server.add_channel(guild, f"news-{n}") for n in range(40)]
    chat = make(discord_server, chats, tmp_path)
    # Every channel at once: a lookup and a post each, 80 requests in one burst.
    await asyncio.gather(*(chat.send(ref(c), post(f"for {c.name}"), f"k-{c.id}") for c in channels))
    assert all(len(discord_server.messages_in(c)) == 1 for c in channels)
    assert discord_server.global_429s == 0
    assert [r for r in discord_server.requests if r.status == 429] == []
    assert _peak(sorted(r.at for r in discord_server.requests)) <= 50


def _peak(times: list[float], span_s: float = 1.0) -> int:
    best, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= span_s:
            start += 1
        best = max(best, end - start + 1)
    return best
