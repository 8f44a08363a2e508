"""End to end: the real CLI in a subprocess, configured only through the environment,
running the Discord chat against the local Discord in this test's process.

`kill -9` right after a post reached Discord and before Starling recorded it; the
restarted process finds the post in the channel (its footer carries the key) and
does not post it again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.plugins import NETWORK_GROUP, discover
from tests.conftest import REPO
from tests.fakes.discord_server import Channel, DiscordServer
from tests.feedserver import FeedServer

pytestmark = pytest.mark.slow


@pytest_asyncio.fixture
async def discord_server() -> AsyncIterator[DiscordServer]:
    # Discord forgets nonces after a few minutes: say the restart took that long, so
    # only Starling's own lookup can stop a second post.
    async with DiscordServer(bucket_window_s=0.5, nonce_window_s=0.0) as server:
        yield server
    # Every answer the fake gave matched Discord's published schemas, and so did
    # every body Starling sent.
    assert server.invalid_responses == [], server.invalid_responses[:3]
    assert server.invalid_bodies == [], server.invalid_bodies[:3]


async def start(
    data_dir: Path, server: DiscordServer, guild_id: str, **env: str
) -> asyncio.subprocess.Process:
    others = {
        f"STARLING_{name.upper()}__ENABLED": "false"
        for name in discover(NETWORK_GROUP)
        if name != "feeds"
    }
    environment = {
        **os.environ,
        **others,
        "STARLING_CHATS": "discord",
        "STARLING_DISCORD__TOKEN": server.token,
        "STARLING_DISCORD__API_URL": server.api_url,
        "STARLING_DISCORD__GUILD_IDS": guild_id,
        "STARLING_DISCORD__MIN_INTERVAL_S": "0",
        "STARLING_ALLOW_PRIVATE_ADDRESSES": "true",
        "STARLING_MIN_INTERVAL_S": "0.1",
        "STARLING_JITTER": "0",
        "STARLING_LOG_LEVEL": "INFO",
        **env,
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", "--data-dir", str(data_dir),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=REPO, env=environment,
    )  # fmt: skip


async def identified(server: DiscordServer, count: int, proc: asyncio.subprocess.Process) -> None:
    async with asyncio.timeout(30):
        while len(server.identifies) < count:
            if proc.returncode is not None:
                _, err = await proc.communicate()
                raise AssertionError(f"Starling exited early:\n{err.decode()[-3000:]}")
            await asyncio.sleep(0.05)


def titles(server: DiscordServer, channel: Channel) -> list[str]:
    return [m["embeds"][0]["title"] for m in server.messages_in(channel) if m["embeds"]]


@pytest.mark.parametrize("use_webhooks", ["false", "true"])
async def test_kill_9_between_posting_and_recording_never_posts_twice(
    tmp_path: Path, discord_server: DiscordServer, feed_server: FeedServer, use_webhooks: str
) -> None:
    guild = discord_server.add_guild()
    general = discord_server.add_channel(guild, "general")
    feed = feed_server.add_feed("news")
    data = tmp_path / "data"

    hooks = {"STARLING_DISCORD__USE_WEBHOOKS": use_webhooks}
    first = await start(data, discord_server, guild.id, STARLING_CRASHPOINT="after_send", **hooks)
    await identified(discord_server, 1, first)
    log = await discord_server.invoke(
        general,
        "follow",
        [
            {"name": "network", "type": 3, "value": "feeds"},
            {"name": "target", "type": 3, "value": feed_server.feed_url("news")},
            {"name": "every", "type": 3, "value": "0.3s"},
        ],
    )
    ((answer, _),) = await log.wait_shown(within_s=10)
    assert answer.startswith("Following ")
    feed.add_item(title="Exactly once")
    assert await asyncio.wait_for(first.wait(), 30) == -signal.SIGKILL
    assert titles(discord_server, general) == ["Exactly once"]

    second = await start(data, discord_server, guild.id, **hooks)
    try:
        await identified(discord_server, 2, second)
        feed.add_item(title="After the restart")
        await discord_server.wait_for_messages(general, 2, within_s=20)
        await asyncio.sleep(1.0)  # a duplicate, if any, would arrive in this time
        assert titles(discord_server, general) == ["Exactly once", "After the restart"]
        assert discord_server.calls("GET", rf"/channels/{general.id}/messages"), "looked first"
    finally:
        second.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(second.communicate(), 30)
    assert second.returncode == 0, err.decode()[-3000:]
    logged = err.decode()
    assert (
        "Invite Starling to a Discord server with: https://discord.com/oauth2/authorize" in logged
    )
    assert discord_server.token not in logged
