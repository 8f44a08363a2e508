"""Edits, replies and deletes on Mastodon, as a Discord channel sees them.

The whole bot (App, SQLite, the Mastodon plugin streaming from the fake Mastodon,
the real discord.py client against the local Discord) runs; the tests read the
channel, and every request and answer is checked against Discord's schemas.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest_asyncio

from bot.app import App
from bot.clock import SystemClock
from bot.config import load_settings
from bot.plugins import NETWORK_GROUP, discover
from bot.protocols import HealthRecorder, PluginContext
from plugins.discord import create
from tests.fakes.discord_server import Channel, DiscordServer, Guild
from tests.fakes.mastodon_server import MastodonFake, plugin_config

AUTHOR = "mastodonpy_test_2"


class LateHealth:
    """The app's health book exists only once the app does; the chat is built first."""

    def __init__(self) -> None:
        self.target: HealthRecorder | None = None

    def record(self, *args: Any, **kwargs: Any) -> None:
        if self.target is not None:
            self.target.record(*args, **kwargs)


@pytest_asyncio.fixture
async def discord_server() -> AsyncIterator[DiscordServer]:
    async with DiscordServer(bucket_window_s=0.5) as server:
        yield server
    assert server.invalid_responses == [], server.invalid_responses[:3]
    assert server.invalid_bodies == [], server.invalid_bodies[:3]


@pytest_asyncio.fixture
async def mastodon() -> AsyncIterator[MastodonFake]:
    async with MastodonFake() as server:
        yield server


Start = Callable[..., Awaitable[tuple[App, asyncio.Task[None]]]]


@pytest_asyncio.fixture
async def start(
    tmp_path: Path, discord_server: DiscordServer, mastodon: MastodonFake
) -> AsyncIterator[Start]:
    guild = discord_server.add_guild("Team")
    running: list[tuple[App, asyncio.Task[None]]] = []
    others = {
        name: {"enabled": False}
        for name in discover(NETWORK_GROUP)
        if name not in ("feeds", "mastodon")
    }

    async def run(**options: Any) -> tuple[App, asyncio.Task[None]]:
        health = LateHealth()
        chat = create(
            PluginContext(
                name="discord",
                config={
                    "token": discord_server.token,
                    "api_url": discord_server.api_url,
                    "guild_ids": guild.id,
                    "min_interval_s": "0",
                    **options.pop("discord", {}),
                },
                health=health,
                clock=SystemClock(),
                allow_private_addresses=True,
                data_dir=str(tmp_path),
            )
        )
        settings = load_settings(
            data_dir=tmp_path / "data",
            allow_private_addresses=True,
            min_interval_s=0.1,
            jitter=0.0,
            health_flush_s=0.5,
            shutdown_grace_s=5.0,
            mastodon=plugin_config(mastodon),
            **others,
            **options,
        )
        app = await App.create(settings, chats={"discord": chat})
        health.target = app.health
        task = asyncio.create_task(app.run())
        running.append((app, task))
        await discord_server.wait_connected()
        return app, task

    yield run
    for app, task in running:
        if not task.done():
            app.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 30)


def channel_in(server: DiscordServer) -> Channel:
    guild: Guild = next(iter(server.guilds.values()))
    return server.add_channel(guild, "general")


async def follow_python(server: DiscordServer, mastodon: MastodonFake, channel: Channel) -> None:
    options = [
        {"name": "network", "type": 3, "value": "mastodon"},
        {"name": "target", "type": 3, "value": "#python"},
        {"name": "every", "type": 3, "value": "1h"},
    ]
    log = await server.invoke(channel, "follow", options)
    await log.answer(within_s=3)
    await log.wait_shown()
    await mastodon.wait_subscribed("hashtag", "python")


def relayed(server: DiscordServer, channel: Channel) -> list[dict[str, Any]]:
    return [m for m in server.messages_in(channel) if m["embeds"]]


async def until(check: Callable[[], bool], within_s: float = 5.0) -> None:
    async with asyncio.timeout(within_s):
        while not check():
            await asyncio.sleep(0.02)


async def test_edit_reply_and_delete_upstream_are_followed_after_a_restart(
    discord_server: DiscordServer, mastodon: MastodonFake, start: Start
) -> None:
    general = channel_in(discord_server)
    app, task = await start()
    await follow_python(discord_server, mastodon, general)

    parent = mastodon.post(AUTHOR, "Parent thought #python")
    await until(lambda: len(relayed(discord_server, general)) == 1)
    mastodon.edit_status(parent["id"], "Parent thought, corrected #python")
    await until(lambda: "corrected" in str(relayed(discord_server, general)[0]["embeds"]))
    assert len(relayed(discord_server, general)) == 1

    app.stop()
    await asyncio.wait_for(task, 30)
    await start()
    await mastodon.wait_subscribed("hashtag", "python")

    mastodon.post(AUTHOR, "A reply to myself #python", reply_to=parent["id"])
    await until(lambda: len(relayed(discord_server, general)) == 2)
    first, reply = relayed(discord_server, general)
    assert reply["message_reference"]["message_id"] == first["id"], "shown as a reply"

    mastodon.delete_status(parent["id"])
    await until(lambda: len(relayed(discord_server, general)) == 1)
    (left,) = relayed(discord_server, general)
    assert "A reply to myself" in str(left["embeds"])


async def test_mark_mode_edits_the_embed_into_a_notice(
    discord_server: DiscordServer, mastodon: MastodonFake, start: Start
) -> None:
    general = channel_in(discord_server)
    await start(on_upstream_delete="mark")
    await follow_python(discord_server, mastodon, general)
    status = mastodon.post(AUTHOR, "Hot take #python")
    await until(lambda: len(relayed(discord_server, general)) == 1)

    mastodon.delete_status(status["id"])
    await until(lambda: "deleted upstream" in str(relayed(discord_server, general)[0]["embeds"]))
    assert "Hot take" not in str(relayed(discord_server, general))


async def test_with_webhooks_a_delete_removes_the_webhook_message(
    discord_server: DiscordServer, mastodon: MastodonFake, start: Start
) -> None:
    general = channel_in(discord_server)
    await start(discord={"use_webhooks": "true"})
    await follow_python(discord_server, mastodon, general)
    status = mastodon.post(AUTHOR, "Through the webhook #python")
    await until(lambda: len(relayed(discord_server, general)) == 1)
    assert relayed(discord_server, general)[0]["webhook_id"]

    mastodon.delete_status(status["id"])
    await until(lambda: len(relayed(discord_server, general)) == 0)
