"""The whole bot with the Slack chat, loaded through its entry point, against a local Slack.

Members type `/starling …` (a Socket Mode envelope, or a signed HTTP request);
feed items arrive in the channel as Block Kit cards, once, through rate limits
and deleted channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.app import App
from bot.config import load_settings
from bot.errors import Outcome
from plugins.slack import SlackChat
from tests.fakes.slack_server import FakeChannel, FakeSlack
from tests.feedserver import FeedServer


@pytest_asyncio.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


class SlackBot:
    def __init__(self, app: App, task: asyncio.Task[None]) -> None:
        self.app = app
        self.task = task

    @property
    def chat(self) -> SlackChat:
        chat = self.app.chats["slack"]
        assert isinstance(chat, SlackChat)
        return chat

    async def stop(self) -> None:
        self.app.stop()
        await asyncio.wait_for(self.task, 30)


StartSlackBot = Callable[..., Awaitable[SlackBot]]


@pytest_asyncio.fixture
async def start_slack_bot(
    tmp_path: Path, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[StartSlackBot]:
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)
    running: list[SlackBot] = []

    async def start(*, wait_ready: bool = True, **slack_options: Any) -> SlackBot:
        settings = load_settings(
            data_dir=tmp_path / "data",
            chats=["slack"],
            allow_private_addresses=True,
            min_interval_s=0.1,
            jitter=0.0,
            health_flush_s=0.5,
            shutdown_grace_s=2.0,
            slack=slack.plugin_config(**{"min_interval_s": 0.05, **slack_options}),
        )
        app = await App.create(settings)
        bot = SlackBot(app, asyncio.create_task(app.run()))
        running.append(bot)
        if wait_ready:
            await asyncio.wait_for(bot.chat.connected.wait(), 10)
        return bot

    yield start
    for bot in running:
        if not bot.task.done():
            with contextlib.suppress(Exception):
                await bot.stop()


async def follow(slack: FakeSlack, channel: FakeChannel, url: str) -> dict[str, Any]:
    command = await slack.slash_command(f"follow feeds {url} --every 0.3s", channel=channel)
    return await slack.wait_response(command.response_id)


async def test_follow_acks_in_time_then_new_items_arrive_as_cards(
    slack: FakeSlack, start_slack_bot: StartSlackBot, feed_server: FeedServer
) -> None:
    feed = feed_server.add_feed("news")
    feed.add_item(title="Old news")
    general = slack.add_channel("general")
    await start_slack_bot()

    command = await slack.slash_command(
        f"follow feeds {feed_server.feed_url('news')} --every 0.3s", channel=general
    )
    assert command.ack == {"envelope_id": command.envelope_id}
    assert command.ack_after_s < 3.0
    answer = await slack.wait_response(command.response_id)
    assert answer["response_type"] == "ephemeral", "a new follow is confirmed to its member"
    assert "as #1" in answer["text"]

    feed.add_item(
        title="Fresh @here news",
        content="<p>Tea &amp; <b>cake</b> &lt;!channel&gt; &lt;@U0BOSS&gt;</p>",
    )
    await slack.wait_until(lambda: len(general.bot_messages()) == 1)
    await asyncio.sleep(0.5)  # a few more polls: still one message
    (card,) = general.bot_messages()
    assert [b["type"] for b in card["blocks"]][:2] == ["context", "section"]
    section = card["blocks"][1]["text"]["text"]
    assert "|Fresh @\u2060here news>*" in section
    assert "Tea &amp; cake &lt;\u2060!channel&gt; &lt;\u2060@U0BOSS&gt;" in section
    assert card["metadata"]["event_payload"]["key"].startswith("starling:")
    assert "Old news" not in str(general.messages)
    assert slack.pings == []


async def test_help_and_mistakes_are_answered_only_to_the_member(
    slack: FakeSlack, start_slack_bot: StartSlackBot
) -> None:
    general = slack.add_channel("general")
    await start_slack_bot()

    help_text = await slack.wait_response(
        (await slack.slash_command("", channel=general)).response_id
    )
    assert help_text["response_type"] == "ephemeral"
    assert "/starling follow &lt;network&gt;" in help_text["text"]

    wrong = await slack.wait_response(
        (await slack.slash_command("follow nosuchnet someone", channel=general)).response_id
    )
    assert wrong["response_type"] == "ephemeral"
    assert wrong["text"].startswith("/starling follow: unknown network 'nosuchnet'")
    assert "\n" not in wrong["text"]

    unknown = await slack.wait_response(
        (await slack.slash_command("frobnicate", channel=general)).response_id
    )
    assert "type /starling help" in unknown["text"]

    hostile = await slack.wait_response(
        (await slack.slash_command("<!here> &lt;@U0BOSS&gt; @channel", channel=general)).response_id
    )
    assert hostile["text"].startswith("/starling &lt;\u2060!here&gt;: unknown command")

    listing = await slack.wait_response(
        (await slack.slash_command("list", channel=general)).response_id
    )
    assert listing["text"].startswith("No subscriptions in this channel yet")
    assert general.messages == []
    assert slack.pings == []


async def test_following_in_a_channel_starling_is_not_in_says_how_to_fix_it(
    slack: FakeSlack, start_slack_bot: StartSlackBot, feed_server: FeedServer
) -> None:
    feed_server.add_feed("news")
    lobby = slack.add_channel("lobby", member=False)
    await start_slack_bot()
    command = await slack.slash_command(
        f"follow feeds {feed_server.feed_url('news')}", channel=lobby
    )
    await slack.wait_until(lambda: len(slack.responses_for(command.response_id)) == 2)
    confirmation, note = slack.responses_for(command.response_id)
    assert "as #1" in confirmation["text"]
    assert note["response_type"] == "ephemeral"
    assert "/invite @starling" in note["text"]


async def test_a_rate_limit_storm_delays_but_loses_nothing(
    slack: FakeSlack, start_slack_bot: StartSlackBot, feed_server: FeedServer
) -> None:
    feed = feed_server.add_feed("news")
    general = slack.add_channel("general")
    bot = await start_slack_bot()
    await follow(slack, general, feed_server.feed_url("news"))

    slack.rate_limit("chat.postMessage", times=6, retry_after=0.2)
    titles = [f"Storm item {n}" for n in range(4)]
    for title in titles:
        feed.add_item(title=title)
    await slack.wait_until(lambda: len(general.bot_messages()) == 4, within_s=20)
    await asyncio.sleep(0.5)
    shown = [m["blocks"][1]["text"]["text"] for m in general.bot_messages()]
    assert [next(t for t in titles if t in s) for s in shown] == titles
    assert slack.count("chat.postMessage") == 4 + 6
    hosts = bot.app.health.by_network()["slack"]
    assert sum(h.counts[Outcome.RATE_LIMITED] for h in hosts) == 6


async def test_a_deleted_channel_pauses_its_subscription_while_others_keep_flowing(
    slack: FakeSlack, start_slack_bot: StartSlackBot, feed_server: FeedServer
) -> None:
    feed = feed_server.add_feed("news")
    doomed = slack.add_channel("doomed")
    general = slack.add_channel("general")
    bot = await start_slack_bot()
    for channel in (doomed, general):
        await follow(slack, channel, feed_server.feed_url("news"))

    slack.delete_channel(doomed.id)
    feed.add_item(title="First after deletion")
    await slack.wait_until(lambda: len(general.bot_messages()) == 1)
    feed.add_item(title="Second after deletion")
    await slack.wait_until(lambda: len(general.bot_messages()) == 2)

    (sub,) = await bot.app.store.list_subscriptions(bot.chat.channel_ref(slack.team_id, doomed.id))
    assert "deleted" in sub.paused_reason
    to_doomed = [a for m, a in slack.calls if m == "chat.postMessage" and a["channel"] == doomed.id]
    assert len(to_doomed) == 1  # tried once, then paused: no retry storm
    listing = await slack.wait_response(
        (await slack.slash_command("list", channel=general)).response_id
    )
    assert "PAUSED" not in listing["text"]


async def test_an_expired_response_url_falls_back_to_an_ephemeral_message(
    slack: FakeSlack, start_slack_bot: StartSlackBot
) -> None:
    general = slack.add_channel("general")
    await start_slack_bot()
    slack.response_url_status = 404
    await slack.slash_command("list", channel=general)
    await slack.wait_until(lambda: len(slack.ephemerals) == 1)
    (answer,) = slack.ephemerals
    assert answer["user"] == "U0MEMBER01"
    assert answer["text"].startswith("No subscriptions")
    assert general.messages == []


async def test_commands_keep_working_after_slack_asks_for_a_reconnect(
    slack: FakeSlack, start_slack_bot: StartSlackBot
) -> None:
    general = slack.add_channel("general")
    await start_slack_bot()
    await slack.disconnect_socket()
    await slack.wait_until(lambda: slack.socket_connections == 2)
    result = await slack.slash_command("list", channel=general)
    assert (await slack.wait_response(result.response_id))["response_type"] == "ephemeral"
    assert slack.count("apps.connections.open") == 2


async def test_a_command_from_another_workspace_is_not_run(
    slack: FakeSlack, start_slack_bot: StartSlackBot, feed_server: FeedServer
) -> None:
    feed_server.add_feed("news")
    general = slack.add_channel("general")
    bot = await start_slack_bot()
    command = await slack.slash_command(
        f"follow feeds {feed_server.feed_url('news')}", channel=general, team_id="T0INTRUDER"
    )
    answer = await slack.wait_response(command.response_id)
    assert answer["text"] == (
        "This Starling is installed in another Slack workspace; nothing was changed."
    )
    await asyncio.sleep(0.3)
    assert (
        await bot.app.store.list_subscriptions(bot.chat.channel_ref(slack.team_id, general.id))
        == []
    )


async def test_a_revoked_token_stops_the_slack_chat_with_a_clear_log_line(
    slack: FakeSlack, start_slack_bot: StartSlackBot, caplog: pytest.LogCaptureFixture
) -> None:
    slack.revoked = True
    caplog.set_level(logging.ERROR)
    bot = await start_slack_bot(wait_ready=False)
    await asyncio.wait_for(bot.task, 10)  # Slack was the only chat, so Starling stops
    assert "Slack refused the bot token (the Slack bot token was revoked" in caplog.text
    assert slack.bot_token not in caplog.text


# --- HTTP mode ----------------------------------------------------------------------


async def test_http_mode_runs_only_correctly_signed_fresh_commands(
    slack: FakeSlack, start_slack_bot: StartSlackBot
) -> None:
    general = slack.add_channel("general")
    bot = await start_slack_bot(mode="http", http_host="127.0.0.1", http_port=0)
    endpoint = f"http://127.0.0.1:{bot.chat.http_port}/slack/events"

    status, _, response_id = await slack.http_command(endpoint, "list", channel=general)
    assert status == 200
    answer = await slack.wait_response(response_id)
    assert answer["text"].startswith("No subscriptions")

    forged, _, forged_id = await slack.http_command(
        endpoint, "list", channel=general, secret="not-the-secret"
    )
    stale, _, stale_id = await slack.http_command(
        endpoint, "list", channel=general, timestamp=int(time.time()) - 600
    )
    assert (forged, stale) == (401, 401)
    await asyncio.sleep(0.3)
    assert slack.responses_for(forged_id) == slack.responses_for(stale_id) == []
    assert slack.count("apps.connections.open") == 0
