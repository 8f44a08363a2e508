"""The real CLI with the Slack chat in a subprocess, killed between send and record.

Starling is started as a container would start it (`STARLING_CHATS=slack`, tokens
in the environment), talks to the local Slack over Socket Mode, and is killed
with SIGKILL right after posting; after a restart the post is found in the
channel history by its idempotency key and never posted twice.
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

from tests.conftest import REPO
from tests.fakes.slack_server import FakeChannel, FakeSlack
from tests.feedserver import FeedServer

pytestmark = pytest.mark.slow


@pytest_asyncio.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


async def start(slack: FakeSlack, data_dir: Path, **env: str) -> asyncio.subprocess.Process:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    environment.update(
        STARLING_CHATS="slack",
        STARLING_SLACK__BOT_TOKEN=slack.bot_token,
        STARLING_SLACK__APP_TOKEN=slack.app_token,
        STARLING_SLACK__API_URL=slack.api_url,
        STARLING_SLACK__MIN_INTERVAL_S="0.05",
        STARLING_ALLOW_PRIVATE_ADDRESSES="true",
        STARLING_MIN_INTERVAL_S="0.1",
        STARLING_JITTER="0",
        STARLING_LOG_LEVEL="WARNING",
        **env,
    )
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", "--data-dir", str(data_dir),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=REPO, env=environment,
    )  # fmt: skip


def titles(channel: FakeChannel) -> list[str]:
    return [m["blocks"][1]["text"]["text"] for m in channel.bot_messages()]


@pytest.mark.parametrize("crashpoint", ["after_send", "after_record"])
async def test_a_kill_between_send_and_record_never_posts_twice(
    slack: FakeSlack, feed_server: FeedServer, tmp_path: Path, crashpoint: str
) -> None:
    feed = feed_server.add_feed("news")
    general = slack.add_channel("general")
    first = await start(slack, tmp_path, STARLING_CRASHPOINT=crashpoint)
    try:
        await slack.wait_until(lambda: slack.socket_connections == 1, within_s=30)
        command = await slack.slash_command(
            f"follow feeds {feed_server.feed_url('news')} --every 0.3s", channel=general
        )
        assert "as #1" in (await slack.wait_response(command.response_id))["text"]
        feed.add_item(title="Only once")
        assert await asyncio.wait_for(first.wait(), 20) == -signal.SIGKILL
    finally:
        if first.returncode is None:
            first.kill()
    assert len(general.bot_messages()) == 1

    second = await start(slack, tmp_path)
    try:
        await slack.wait_until(lambda: slack.socket_connections == 2, within_s=30)
        feed.add_item(title="Next one")
        await slack.wait_until(lambda: len(general.bot_messages()) >= 2, within_s=20)
        await asyncio.sleep(1.0)  # more polls and any resend would have happened by now
    finally:
        second.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(second.communicate(), 30)
    assert second.returncode == 0, stderr.decode()
    shown = titles(general)
    assert len(shown) == 2, shown
    assert "Only once" in shown[0]
    assert "Next one" in shown[1]
    assert slack.pings == []
