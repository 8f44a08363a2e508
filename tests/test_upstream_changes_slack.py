"""Edits, replies and deletes on Mastodon, as a Slack channel sees them.

The whole bot (App, SQLite, the Mastodon plugin streaming from the fake Mastodon,
the Slack chat through slack-bolt against the local Slack) runs; the tests read
the channel. Message ids are stored, so all of it also works after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.app import App
from bot.config import load_settings
from bot.plugins import NETWORK_GROUP, discover
from plugins.slack import SlackChat
from tests.fakes.mastodon_server import MastodonFake, plugin_config
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


Start = Callable[..., Awaitable[App]]
TASKS: dict[int, asyncio.Task[None]] = {}  # each running app's run task, by id(app)


@pytest_asyncio.fixture
async def start(
    tmp_path: Path, slack: FakeSlack, mastodon: MastodonFake, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Start]:
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)
    running: list[tuple[App, asyncio.Task[None]]] = []
    others = {
        name: {"enabled": False}
        for name in discover(NETWORK_GROUP)
        if name not in ("feeds", "mastodon")
    }

    async def run(**options: Any) -> App:
        settings = load_settings(
            data_dir=tmp_path / "data",
            chats=["slack"],
            allow_private_addresses=True,
            min_interval_s=0.1,
            jitter=0.0,
            health_flush_s=0.5,
            shutdown_grace_s=2.0,
            slack=slack.plugin_config(min_interval_s=0.05),
            mastodon=plugin_config(mastodon),
            **others,
            **options,
        )
        app = await App.create(settings)
        task = asyncio.create_task(app.run())
        running.append((app, task))
        TASKS[id(app)] = task
        chat = app.chats["slack"]
        assert isinstance(chat, SlackChat)
        await asyncio.wait_for(chat.connected.wait(), 10)
        return app

    yield run
    for app, task in running:
        if not task.done():
            app.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 30)


async def stop(app: App) -> None:
    app.stop()
    await asyncio.wait_for(TASKS.pop(id(app)), 30)


async def follow_python(slack: FakeSlack, mastodon: MastodonFake, channel: FakeChannel) -> None:
    command = await slack.slash_command("follow mastodon #python --every 1h", channel=channel)
    answer = await slack.wait_response(command.response_id)
    assert "as #1" in answer["text"]
    await mastodon.wait_subscribed("hashtag", "python")


def shown(channel: FakeChannel) -> list[str]:
    """Each relayed message as the channel shows it (its fallback text)."""
    return [m["text"] for m in channel.bot_messages()]


def posted(slack: FakeSlack) -> list[dict[str, Any]]:
    return [args for method, args in slack.calls if method == "chat.postMessage"]


async def test_an_edit_updates_a_reply_threads_and_a_delete_removes_even_after_a_restart(
    slack: FakeSlack, mastodon: MastodonFake, start: Start
) -> None:
    general = slack.add_channel("general")
    app = await start()
    await follow_python(slack, mastodon, general)

    parent = mastodon.post(AUTHOR, "Parent thought #python")
    await slack.wait_until(lambda: len(general.bot_messages()) == 1)
    mastodon.edit_status(parent["id"], "Parent thought, corrected #python")
    await slack.wait_until(lambda: "corrected" in shown(general)[0])
    assert len(general.bot_messages()) == 1, "an edit updates the message, never reposts"

    await stop(app)
    await start()
    await mastodon.wait_subscribed("hashtag", "python")

    mastodon.post(AUTHOR, "A reply to myself #python", reply_to=parent["id"])
    await slack.wait_until(lambda: len(general.bot_messages()) == 2)
    parent_ts = general.bot_messages()[0]["ts"]
    assert posted(slack)[-1]["thread_ts"] == parent_ts, "the reply joins its parent's thread"

    mastodon.post(AUTHOR, "Unrelated #python")
    await slack.wait_until(lambda: len(general.bot_messages()) == 3)
    assert "thread_ts" not in posted(slack)[-1]

    mastodon.delete_status(parent["id"])
    await slack.wait_until(lambda: len(general.bot_messages()) == 2)
    assert not any("Parent thought" in text for text in shown(general))
    assert next(c for c in slack.calls if c[0] == "chat.delete")[1]["ts"] == parent_ts

    # The same delete reported again (a replay after a reconnect) does nothing more.
    mastodon.statuses[parent["id"]] = parent
    mastodon.delete_status(parent["id"])
    await asyncio.sleep(0.5)
    assert slack.count("chat.delete") == 1
    assert len(general.bot_messages()) == 2


async def test_a_delete_the_chat_could_not_finish_is_done_after_a_restart(
    slack: FakeSlack, mastodon: MastodonFake, start: Start
) -> None:
    general = slack.add_channel("general")
    app = await start()
    await follow_python(slack, mastodon, general)
    status = mastodon.post(AUTHOR, "Soon regretted #python")
    await slack.wait_until(lambda: len(general.bot_messages()) == 1)

    slack.fail("chat.delete", "internal_error", times=1, status=500)
    mastodon.delete_status(status["id"])
    await slack.wait_until(lambda: slack.count("chat.delete") == 1)
    assert len(general.bot_messages()) == 1, "Slack failed; the retraction waits"
    await stop(app)  # before the retry: only the database remembers
    assert slack.count("chat.delete") == 1
    assert len(general.bot_messages()) == 1

    await start()
    await slack.wait_until(lambda: len(general.bot_messages()) == 0)


async def test_mark_mode_keeps_the_message_but_says_it_was_deleted(
    slack: FakeSlack, mastodon: MastodonFake, start: Start
) -> None:
    general = slack.add_channel("general")
    await start(on_upstream_delete="mark")
    await follow_python(slack, mastodon, general)
    status = mastodon.post(AUTHOR, "Hot take #python")
    await slack.wait_until(lambda: len(general.bot_messages()) == 1)

    mastodon.delete_status(status["id"])
    await slack.wait_until(lambda: "deleted upstream" in shown(general)[0])
    assert "Hot take" not in str(general.bot_messages()), "the author's words are not kept"
    assert slack.count("chat.delete") == 0


async def test_keep_mode_leaves_the_message_alone(
    slack: FakeSlack, mastodon: MastodonFake, start: Start
) -> None:
    general = slack.add_channel("general")
    app = await start(on_upstream_delete="keep")
    await follow_python(slack, mastodon, general)
    status = mastodon.post(AUTHOR, "Kept for the record #python")
    await slack.wait_until(lambda: len(general.bot_messages()) == 1)

    mastodon.delete_status(status["id"])
    await asyncio.sleep(0.5)
    await app.dispatcher.retractor.drain()
    assert "Kept for the record" in shown(general)[0]
    assert slack.count("chat.delete") == 0
    assert slack.count("chat.update") == 0


async def test_an_edit_of_a_post_from_before_the_follow_is_not_news(
    slack: FakeSlack, mastodon: MastodonFake, start: Start
) -> None:
    general = slack.add_channel("general")
    old = mastodon.post(AUTHOR, "Written last week about #rust")
    await asyncio.sleep(0.01)  # the follow comes strictly after the post
    await start()
    await follow_python(slack, mastodon, general)

    mastodon.edit_status(old["id"], "Written last week, now also about #python")
    mastodon.post(AUTHOR, "Today's #python news")
    await slack.wait_until(lambda: len(general.bot_messages()) == 1)
    await asyncio.sleep(0.3)
    (only,) = shown(general)
    assert "Today's" in only


async def test_a_post_deleted_while_it_waits_in_the_outbox_is_never_shown(
    slack: FakeSlack, mastodon: MastodonFake, start: Start
) -> None:
    general = slack.add_channel("general")
    await start()
    await follow_python(slack, mastodon, general)

    slack.fail("chat.postMessage", "internal_error", times=1, status=500)
    status = mastodon.post(AUTHOR, "Posted in haste #python")
    await slack.wait_until(lambda: slack.count("chat.postMessage") == 1)
    mastodon.delete_status(status["id"])  # while the send waits for its retry
    mastodon.post(AUTHOR, "Second thoughts #python")
    await slack.wait_until(lambda: len(general.bot_messages()) == 1, within_s=10)
    await asyncio.sleep(2.5)  # the failed send's retry time has passed
    (only,) = shown(general)
    assert "Second thoughts" in only
    # If the send raced its delete (it was already on its way), it is removed at once.
    assert slack.count("chat.postMessage") - slack.count("chat.delete") == 2
