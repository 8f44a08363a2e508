"""A reply relayed into a Slack thread, killed between send and record, shows once.

`conversations.history` does not list thread replies, so after a crash Starling
also reads the threads under its own messages (`conversations.replies`) for the
delivery key. The real CLI runs in a subprocess against the local Slack and the
local Mastodon and dies by SIGKILL right after posting the reply.
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

from bot.clock import SystemClock
from bot.errors import ChatError
from bot.health import HealthBook
from bot.model import ChannelRef, RichMessage
from bot.protocols import PluginContext
from plugins.slack import create
from tests.conftest import REPO
from tests.fakes.mastodon_server import MastodonFake, plugin_env
from tests.fakes.slack_server import FakeChannel, FakeSlack

AUTHOR = "mastodonpy_test_2"


@pytest_asyncio.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


@pytest_asyncio.fixture
async def mastodon() -> AsyncIterator[MastodonFake]:
    async with MastodonFake() as server:
        yield server


async def start(
    slack: FakeSlack, mastodon: MastodonFake, data_dir: Path, **env: str
) -> asyncio.subprocess.Process:
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
        **plugin_env(mastodon),
        **env,
    )
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", "--data-dir", str(data_dir),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=REPO, env=environment,
    )  # fmt: skip


def shown(channel: FakeChannel) -> list[str]:
    """What the channel view shows (thread replies are not in it)."""
    return [m["text"] for m in channel.bot_messages() if m.get("thread_ts") in (None, m["ts"])]


@pytest.mark.slow
async def test_a_kill_after_a_threaded_reply_was_sent_never_posts_it_twice(
    slack: FakeSlack, mastodon: MastodonFake, tmp_path: Path
) -> None:
    general = slack.add_channel("general")
    # The second send (the reply) is the one the process dies after.
    first = await start(
        slack, mastodon, tmp_path, STARLING_CRASHPOINT="after_send", STARLING_CRASHPOINT_AFTER="2"
    )
    try:
        await slack.wait_until(lambda: slack.socket_connections == 1, within_s=30)
        command = await slack.slash_command("follow mastodon #python --every 1h", channel=general)
        assert "as #1" in (await slack.wait_response(command.response_id))["text"]
        await mastodon.wait_subscribed("hashtag", "python")
        parent = mastodon.post(AUTHOR, "Parent thought #python")
        await slack.wait_until(lambda: len(general.bot_messages()) == 1, within_s=20)
        mastodon.post(AUTHOR, "A reply to myself #python", reply_to=parent["id"])
        assert await asyncio.wait_for(first.wait(), 20) == -signal.SIGKILL
    finally:
        if first.returncode is None:
            first.kill()
    root = general.bot_messages()[0]["ts"]
    assert len(slack.thread(general, root)) == 1, "the reply went out before the kill"

    second = await start(slack, mastodon, tmp_path)
    try:
        await slack.wait_until(lambda: slack.socket_connections == 2, within_s=30)
        await mastodon.wait_subscribed("hashtag", "python")
        mastodon.post(AUTHOR, "Next one #python")
        await slack.wait_until(lambda: len(shown(general)) == 2, within_s=20)
        await asyncio.sleep(1.0)  # any resend would have happened by now
    finally:
        second.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(second.communicate(), 30)
    assert second.returncode == 0, stderr.decode()
    replies = slack.thread(general, root)
    assert ["A reply to myself" in m["text"] for m in replies] == [True], replies
    assert "Parent thought" in shown(general)[0]
    assert "Next one" in shown(general)[1]
    assert general.bot_messages()[0]["reply_count"] == 1
    looked = [a for m, a in slack.calls if m == "conversations.replies"]
    assert looked
    assert all(a["ts"] == root for a in looked)


async def test_an_uncertain_reply_is_looked_for_in_its_thread_before_it_is_resent(
    slack: FakeSlack,
) -> None:
    general = slack.add_channel("general")
    ctx = PluginContext(
        "slack", slack.plugin_config(), HealthBook(SystemClock()), SystemClock(), False, "."
    )
    chat = create(ctx)
    try:
        channel = ChannelRef("slack", f"{slack.team_id}/{general.id}")
        parent = await chat.send(channel, RichMessage(text="Parent"), "k-parent")
        slack.lose_answer("chat.postMessage")  # Slack posts it, the answer is lost
        reply = RichMessage(text="Reply", thread_ref=parent)
        with pytest.raises(ChatError):
            await chat.send(channel, reply, "k-reply")
        ref = await chat.send(channel, reply, "k-reply")
        assert len(slack.thread(general, parent)) == 1
        assert ref == f"{slack.thread(general, parent)[0]['ts']}@{parent}"
        assert await chat.find_sent(channel, "k-reply") == ref
        assert await chat.find_sent(channel, "k-other") is None
    finally:
        await chat.aclose()
