"""The Discord chat on the real discord.py client against a local Discord.

What Discord would end up holding after each call: the messages in a channel,
their embeds, who posted them, what mentions they allow, and which requests
Starling made to get there (rate limits and errors included).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from bot.clock import SystemClock
from bot.config import ConfigError
from bot.errors import ChatError, Outcome
from bot.health import HealthBook
from bot.model import ChannelRef, RichMessage
from bot.protocols import PluginContext
from plugins.discord import DiscordChat, create
from plugins.discord.embeds import footer_marker, key_token
from tests.fakes.discord_server import FORUM, PUBLIC_THREAD, Channel, DiscordServer

MakeChat = Callable[..., Awaitable[DiscordChat]]


@pytest_asyncio.fixture
async def discord_server() -> AsyncIterator[DiscordServer]:
    async with DiscordServer(bucket_window_s=0.5) as server:
        yield server
    # Every answer the fake gave matched Discord's published schemas, and so did
    # every body Starling sent.
    assert server.invalid_responses == [], server.invalid_responses[:3]
    assert server.invalid_bodies == [], server.invalid_bodies[:3]


def post(
    title: str = "Python 3.14.1 is out", text: str = "The first maintenance release."
) -> RichMessage:
    return RichMessage(
        text=text,
        title=title,
        author="Python Insider",
        author_url="https://blog.python.org/",
        avatar_url="https://blog.python.org/avatar.png",
        link="https://blog.python.org/2026/11/python-3141.html",
        network="feeds",
    )


def ref(channel: Channel) -> ChannelRef:
    return ChannelRef("discord", channel.id, channel.name)


@pytest_asyncio.fixture
async def make_chat(discord_server: DiscordServer, tmp_path: Any) -> AsyncIterator[MakeChat]:
    """Build a DiscordChat through the plugin factory, pointed at the local Discord."""
    made: list[DiscordChat] = []

    async def make(**options: Any) -> DiscordChat:
        config = {
            "token": discord_server.token,
            "api_url": discord_server.api_url,
            "min_interval_s": "0",
            **options,
        }
        health = options.pop("health", None) or HealthBook(SystemClock())
        config.pop("health", None)
        chat = create(
            PluginContext(
                name="discord",
                config=config,
                health=health,
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
def general(discord_server: DiscordServer) -> Channel:
    guild = discord_server.add_guild()
    return discord_server.add_channel(guild, "general")


# --- sending ----------------------------------------------------------------------------


async def test_a_post_arrives_as_one_embed_that_can_mention_no_one(
    discord_server: DiscordServer, make_chat: MakeChat, general: Channel
) -> None:
    chat = await make_chat()
    message = post(title="Hi @everyone", text="see <@80351110224678912> and <#1>")
    sent = await chat.send(ref(general), message, "starling:1:feeds:a")

    (shown,) = discord_server.messages_in(general)
    (embed,) = shown["embeds"]
    assert shown["author"]["id"] == discord_server.bot_user["id"]
    assert shown["allowed_mentions"]["parse"] == []
    assert "users" not in shown["allowed_mentions"]
    assert "roles" not in shown["allowed_mentions"]
    assert embed["url"] == "https://blog.python.org/2026/11/python-3141.html"
    assert "@everyone" not in embed["title"]
    assert "<@" not in embed["description"]
    assert "<#" not in embed["description"]
    assert embed["author"] == {
        "name": "Python Insider",
        "url": "https://blog.python.org/",
        "icon_url": "https://blog.python.org/avatar.png",
    }
    token = key_token("starling:1:feeds:a")
    assert embed["footer"]["text"] == f"feeds · {footer_marker(token)}"
    (request,) = discord_server.calls("POST", rf"/channels/{general.id}/messages")
    assert request.body["nonce"] == token
    assert request.body["enforce_nonce"] is True
    assert sent.split("/")[:2] == [general.id, shown["id"]]
    assert discord_server.invalid_bodies == []


async def test_sending_the_same_key_twice_leaves_one_message(
    discord_server: DiscordServer, make_chat: MakeChat, general: Channel
) -> None:
    chat = await make_chat()
    first = await chat.send(ref(general), post(), "starling:1:feeds:a")
    second = await chat.send(ref(general), post(), "starling:1:feeds:a")
    assert first == second
    assert len(discord_server.messages_in(general)) == 1


async def test_edit_changes_the_message_in_place(
    discord_server: DiscordServer, make_chat: MakeChat, general: Channel
) -> None:
    chat = await make_chat()
    sent = await chat.send(ref(general), post(), "k")
    await chat.edit(ref(general), sent, post(title="Python 3.14.1 is out (updated)"))
    (shown,) = discord_server.messages_in(general)
    assert shown["embeds"][0]["title"] == "Python 3.14.1 is out \\(updated\\)"
    assert shown["edited_timestamp"] is not None
    assert shown["embeds"][0]["footer"]["text"].endswith(footer_marker(key_token("k")))


async def test_a_thread_is_a_target_like_any_channel(
    discord_server: DiscordServer, make_chat: MakeChat, general: Channel
) -> None:
    guild = discord_server.guilds[general.guild_id]
    thread = discord_server.add_channel(guild, "releases", kind=PUBLIC_THREAD, parent=general)
    chat = await make_chat()
    await chat.send(ref(thread), post(), "k")
    assert len(discord_server.messages_in(thread)) == 1
    assert discord_server.messages_in(general) == []


async def test_a_forum_gets_one_post_per_item_and_edits_reach_it(
    discord_server: DiscordServer, make_chat: MakeChat, general: Channel
) -> None:
    guild = discord_server.guilds[general.guild_id]
    forum = discord_server.add_channel(guild, "announcements", kind=FORUM)
    chat = await make_chat()
    sent = await chat.send(ref(forum), post(title="Release @here"), "k1")
    await chat.send(ref(forum), post(title="Second"), "k2")
    posts = [c for c in discord_server.channels.values() if c.parent_id == forum.id]
    assert [p.name for p in posts] == ["Release @\u200bhere", "Second"]
    assert discord_server.messages_in(posts[0])[0]["embeds"][0]["title"] == "Release @\u200bhere"

    await chat.edit(ref(forum), sent, post(title="Release (final)"))
    assert "final" in discord_server.messages_in(posts[0])[0]["embeds"][0]["title"]
    fresh = await make_chat()
    assert await fresh.find_sent(ref(forum), "k1") == sent


# --- exactly once across a crash --------------------------------------------------------


async def test_after_a_crash_the_new_process_finds_what_the_old_one_sent(
    discord_server: DiscordServer, make_chat: MakeChat, general: Channel
) -> None:
    before_crash = await make_chat()
    sent = await before_crash.send(ref(general), post(), "starling:7:feeds:x")
    for n in range(5):
        await before_crash.send(ref(general), post(title=f"later {n}"), f"other-{n}")

    after_restart = await make_chat()
    assert await after_restart.find_sent(ref(general), "starling:7:feeds:x") == sent
    assert await after_restart.find_sent(ref(general), "starling:7:feeds:never") is None


async def test_a_look_alike_message_from_someone_else_does_not_count(
    discord_server: DiscordServer, make_chat: MakeChat, general: Channel
) -> None:
    forged = discord_server._message(
        general,
        {"embeds": [{"footer": {"text": footer_marker(key_token("k"))}}]},
        author={
            "id": "1234",
            "username": "mallory",
            "discriminator": "0",
            "avatar": None,
            "global_name": None,
            "public_flags": 0,
            "flags": 0,
            "primary_guild": None,
        },
    )
    general.messages.append(forged)
    chat = await make_chat()
    assert await chat.find_sent(ref(general), "k") is None


async def test_a_lost_answer_is_looked_up_before_sending_again(
    discord_server: DiscordServer, make_chat: MakeChat, general: Channel
) -> None:
    """Discord stored the post, then the answer was lost: the retry must not double it."""
    chat = await make_chat(use_webhooks="true")  # webhooks have no nonce to dedupe on
    discord_server.fail_next(1, status=503, after_storing=True)
    with pytest.raises(ChatError) as lost:
        await chat.send(ref(general), post(), "k")
    assert not lost.value.permanent
    again = await chat.send(ref(general), post(), "k")
    assert len(discord_server.messages_in(general)) == 1
    assert again.split("/")[1] == discord_server.messages_in(general)[0]["id"]


# --- webhooks ---------------------------------------------------------------------------


async def test_webhooks_show_the_original_author_and_are_made_once(
    discord_server: DiscordServer, make_chat: MakeChat, general: Channel
) -> None:
    chat = await make_chat(use_webhooks="true")
    first = await chat.send(ref(general), post(), "k1")
    await chat.send(ref(general), RichMessage(text="x", author="Discord Staff"), "k2")

    shown = discord_server.messages_in(general)
    assert [m["author"]["username"] for m in shown] == ["Python Insider", "Starling"]
    assert shown[0]["author"]["avatar_url"] == "https://blog.python.org/avatar.png"
    assert all(m["allowed_mentions"]["parse"] == [] for m in shown)
    assert len(discord_server.calls("POST", rf"/channels/{general.id}/webhooks")) == 1

    await chat.edit(ref(general), first, post(title="edited"))
    assert discord_server.messages_in(general)[0]["embeds"][0]["title"] == "edited"
    assert await (await make_chat(use_webhooks="true")).find_sent(ref(general), "k1") == first


async def test_webhooks_post_into_threads_and_forums(
    discord_server: DiscordServer, make_chat: MakeChat, general: Channel
) -> None:
    guild = discord_server.guilds[general.guild_id]
    thread = discord_server.add_channel(guild, "t", kind=PUBLIC_THREAD, parent=general)
    forum = discord_server.add_channel(guild, "f", kind=FORUM)
    chat = await make_chat(use_webhooks="true")
    await chat.send(ref(thread), post(), "k1")
    await chat.send(ref(forum), post(title="A forum post"), "k2")
    assert discord_server.messages_in(thread)[0]["webhook_id"]
    (created,) = [c for c in discord_server.channels.values() if c.parent_id == forum.id]
    assert created.name == "A forum post"
    (execute,) = discord_server.calls("POST", r"/webhooks/\d+/[^/]+")[:1]
    assert execute.query.get("thread_id") == thread.id


# --- failures ---------------------------------------------------------------------------


async def test_a_deleted_channel_is_a_permanent_failure_that_says_so(
    discord_server: DiscordServer, make_chat: MakeChat, general: Channel
) -> None:
    chat = await make_chat()
    await chat.send(ref(general), post(), "k1")
    discord_server.delete_channel(general)
    with pytest.raises(ChatError) as refused:
        await chat.send(ref(general), post(), "k2")
    assert refused.value.permanent
    assert "10003 Unknown Channel" in str(refused.value)


@pytest.mark.parametrize(
    ("code", "words"), [(50013, "Missing Permissions"), (50001, "Missing Access")]
)
async def test_missing_permissions_or_access_are_permanent_and_explained(
    discord_server: DiscordServer, make_chat: MakeChat, general: Channel, code: int, words: str
) -> None:
    discord_server.deny(general, code)
    chat = await make_chat()
    with pytest.raises(ChatError) as refused:
        await chat.send(ref(general), post(), "k")
    assert refused.value.permanent
    assert f"{code} {words}" in str(refused.value)
    assert general.id in str(refused.value)


async def test_a_rejected_token_is_permanent_and_never_shown(
    discord_server: DiscordServer, make_chat: MakeChat, general: Channel
) -> None:
    chat = await make_chat(token="not-the-token")
    with pytest.raises(ChatError) as refused:
        await chat.send(ref(general), post(), "k")
    assert refused.value.permanent
    assert "401" in str(refused.value)
    assert "not-the-token" not in str(refused.value)
    assert "not-the-token" not in repr(chat.settings)


async def test_with_a_rejected_token_the_chat_says_so_once_and_stops(
    discord_server: DiscordServer, make_chat: MakeChat, caplog: pytest.LogCaptureFixture
) -> None:
    chat = await make_chat(token="revoked")
    await asyncio.wait_for(chat.run(_NoCommands()), 10)
    assert "Discord rejected the bot token (401 Unauthorized)" in caplog.text
    assert "revoked" not in caplog.text
    assert discord_server.identifies == []


async def test_a_server_error_is_retried_later_not_fatal(
    discord_server: DiscordServer, make_chat: MakeChat, general: Channel
) -> None:
    chat = await make_chat()
    discord_server.fail_next(1, status=503)
    with pytest.raises(ChatError) as failed:
        await chat.send(ref(general), post(), "k")
    assert not failed.value.permanent
    await chat.send(ref(general), post(), "k")
    assert len(discord_server.messages_in(general)) == 1


async def test_a_short_429_storm_is_waited_out_as_discord_asks(
    discord_server: DiscordServer, make_chat: MakeChat, general: Channel
) -> None:
    chat = await make_chat()
    discord_server.rate_limit_next(2, retry_after=0.25)
    discord_server.rate_limit_next(1, retry_after=0.3, global_=True)
    await chat.send(ref(general), post(), "k")

    posts = discord_server.calls("POST", rf"/channels/{general.id}/messages")
    assert [r.status for r in posts] == [429, 429, 429, 200]
    waits = [later.at - earlier.at for earlier, later in itertools.pairwise(posts)]
    assert all(wait >= 0.24 for wait in waits), waits
    assert len(discord_server.messages_in(general)) == 1


async def test_a_long_429_storm_defers_with_discords_retry_after(
    discord_server: DiscordServer, make_chat: MakeChat, general: Channel
) -> None:
    chat = await make_chat()
    discord_server.rate_limit_next(5, retry_after=0.05)
    with pytest.raises(ChatError) as limited:
        await chat.send(ref(general), post(), "k")
    assert not limited.value.permanent
    assert limited.value.retry_after_s is not None
    assert discord_server.messages_in(general) == []
    await chat.send(ref(general), post(), "k")
    assert len(discord_server.messages_in(general)) == 1


async def test_the_bucket_headers_pace_a_burst_without_a_single_429(
    discord_server: DiscordServer, make_chat: MakeChat, general: Channel
) -> None:
    chat = await make_chat()
    for n in range(12):
        await chat.send(ref(general), post(title=f"n{n}"), f"k{n}")
    statuses = [r.status for r in discord_server.calls("POST", rf"/channels/{general.id}/messages")]
    assert statuses == [200] * 12
    assert len(discord_server.messages_in(general)) == 12


async def test_every_request_is_reported_to_the_health_record(
    discord_server: DiscordServer, make_chat: MakeChat, general: Channel
) -> None:
    health = HealthBook(SystemClock())
    chat = await make_chat(health=health)
    discord_server.rate_limit_next(1, retry_after=0.05)
    await chat.send(ref(general), post(), "k")
    host = health.hosts[("chat:discord", "127.0.0.1")]
    assert host.counts[Outcome.RATE_LIMITED] == 1
    assert host.counts[Outcome.OK] >= 4  # login, application, channel, the post itself
    assert host.last_outcome is Outcome.OK


# --- configuration ----------------------------------------------------------------------


async def test_options_come_from_the_environment_as_strings(make_chat: MakeChat) -> None:
    chat = await make_chat(guild_ids="1, 2", use_webhooks="yes", manage_permission="Manage Guild")
    assert chat.settings.guild_ids == [1, 2]
    assert chat.settings.use_webhooks is True
    assert chat.settings.member_permission().manage_guild


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"token": ""}, "token"),
        ({"manage_permission": "be_nice"}, "manage_permission"),
        ({"api_url": "discord.com/api"}, "api_url"),
        ({"gateway_url": "https://gateway.discord.gg"}, "gateway_url"),
        ({"tokne": "x"}, "tokne"),
    ],
)
async def test_a_bad_option_is_an_error_that_names_it(
    make_chat: MakeChat, options: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=rf"\[discord\] {named}"):
        await make_chat(**options)


async def test_the_invite_url_is_logged_at_login(
    discord_server: DiscordServer,
    make_chat: MakeChat,
    general: Channel,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="plugins.discord")
    chat = await make_chat()
    await chat.send(ref(general), post(), "k")
    expected = (
        f"https://discord.com/oauth2/authorize?client_id={discord_server.application_id}"
        "&scope=bot+applications.commands&permissions=274877991936"
    )
    assert chat.invite == expected
    assert expected in caplog.text
    assert discord_server.token not in caplog.text
    webhooks = await make_chat(use_webhooks="true")
    await webhooks.send(ref(general), post(), "k2")
    assert webhooks.invite.endswith("permissions=275414862848")


async def test_gateway_url_from_config_skips_the_lookup(
    discord_server: DiscordServer, make_chat: MakeChat, general: Channel
) -> None:
    chat = await make_chat(gateway_url=discord_server.gateway_url)
    task = asyncio.create_task(chat.run(_NoCommands()))
    await discord_server.wait_connected()
    assert discord_server.calls("GET", "/gateway/bot") == []
    await chat.aclose()
    await asyncio.wait_for(task, 10)


async def test_without_guild_ids_commands_are_registered_globally(
    discord_server: DiscordServer, make_chat: MakeChat
) -> None:
    chat = await make_chat()
    task = asyncio.create_task(chat.run(_NoCommands()))
    await discord_server.wait_connected()
    assert [c["name"] for c in discord_server.commands[None]] == [
        "follow",
        "search",
        "unfollow",
        "list",
        "status",
        "help",
        "post",
        "approve",
        "reject",
        "undo",
        "accounts",
        "Post a reply from Starling",
        "Quote on…",
    ]
    assert discord_server.calls("GET", "/gateway/bot"), "the gateway URL was asked for"
    await chat.aclose()
    await asyncio.wait_for(task, 10)


async def test_a_server_the_bot_is_not_in_is_logged_and_the_others_still_work(
    discord_server: DiscordServer, make_chat: MakeChat, caplog: pytest.LogCaptureFixture
) -> None:
    guild = discord_server.add_guild()
    chat = await make_chat(guild_ids=f"1, {guild.id}")
    task = asyncio.create_task(chat.run(_NoCommands()))
    await discord_server.wait_connected()
    assert "could not register Starling's commands in Discord server 1 (403" in caplog.text
    assert len(discord_server.commands[guild.id]) == 13
    await chat.aclose()
    await asyncio.wait_for(task, 10)


class _NoCommands:
    """The chat only needs a command service once a member runs a command."""

    async def handle(self, invocation: Any) -> Any:
        raise AssertionError("no command expected")

    async def complete(self, channel: Any, field: str, prefix: str) -> list[Any]:
        return []

    def command_names(self) -> list[str]:
        return []
