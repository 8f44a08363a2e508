"""The Slack chat against a local Slack: cards, exactly-once, errors classified, config checked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.clock import SystemClock
from bot.config import ConfigError
from bot.errors import ChatError, Outcome
from bot.health import HealthBook
from bot.model import ChannelRef, Media, RichMessage
from bot.protocols import PluginContext
from plugins.slack import SlackChat, create
from tests.fakes.slack_server import BOT_ID, FakeChannel, FakeSlack

CARD = RichMessage(
    text="New release <!channel> & friends",
    title="Starling 1.0",
    author="Starling Blog",
    author_url="https://starling.example/",
    avatar_url="https://starling.example/avatar.png",
    link="https://starling.example/posts/1",
    images=(Media("https://starling.example/pic.png", alt="a bird"),),
    network="feeds",
    timestamp=datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
)


@pytest_asyncio.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


class Harness:
    def __init__(self, slack: FakeSlack, tmp_path: Path) -> None:
        self.slack = slack
        self.tmp_path = tmp_path
        self.health = HealthBook(SystemClock())
        self.chats: list[SlackChat] = []

    def chat(self, **options: Any) -> SlackChat:
        ctx = PluginContext(
            "slack",
            self.slack.plugin_config(**options),
            self.health,
            SystemClock(),
            False,
            str(self.tmp_path),
        )
        chat = create(ctx)
        self.chats.append(chat)
        return chat

    def outcomes(self) -> dict[Outcome, int]:
        counts: dict[Outcome, int] = {}
        for host in self.health.hosts.values():
            for outcome, n in host.counts.items():
                counts[outcome] = counts.get(outcome, 0) + n
        return counts


@pytest_asyncio.fixture
async def harness(slack: FakeSlack, tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(slack, tmp_path)
    yield h
    for chat in h.chats:
        await chat.aclose()


def ref(slack: FakeSlack, channel: FakeChannel) -> ChannelRef:
    return ChannelRef("slack", f"{slack.team_id}/{channel.id}", f"#{channel.name}")


async def test_send_posts_a_block_kit_card_carrying_the_idempotency_key(
    slack: FakeSlack, harness: Harness
) -> None:
    general = slack.add_channel("general")
    chat = harness.chat()
    ts = await chat.send(ref(slack, general), CARD, "starling:1:feeds:a")
    (posted,) = general.messages
    assert posted["ts"] == ts
    assert posted["metadata"] == {
        "event_type": "starling_delivery",
        "event_payload": {"key": "starling:1:feeds:a"},
    }
    assert posted["_args"] == {"unfurl_links": False, "unfurl_media": False, "parse": "none"}
    assert [b["type"] for b in posted["blocks"]] == ["context", "section", "image", "actions"]
    assert "New release &lt;\u2060!channel&gt; &amp; friends" in posted["text"]
    assert slack.pings == []
    assert harness.outcomes() == {Outcome.OK: 1}


async def test_find_sent_reads_the_key_back_from_history(
    slack: FakeSlack, harness: Harness
) -> None:
    general = slack.add_channel("general")
    chat = harness.chat()
    channel = ref(slack, general)
    ts = await chat.send(channel, CARD, "key-1")
    await chat.send(channel, CARD, "key-2")
    assert await chat.find_sent(channel, "key-1") == ts
    assert await chat.find_sent(channel, "key-3") is None
    (history,) = [args for name, args in slack.calls if name == "conversations.history"][:1]
    assert history["include_all_metadata"] == "true"
    assert float(history["oldest"]) > 0


async def test_find_sent_pages_through_a_busy_channel_but_only_so_far(
    slack: FakeSlack, harness: Harness
) -> None:
    general = slack.add_channel("general")
    channel = ref(slack, general)
    ts = await harness.chat().send(channel, CARD, "old-key")
    for n in range(450):  # members talking after Starling posted
        general.messages.append(
            {"type": "message", "user": "U0MEMBER01", "text": f"hi {n}", "ts": slack._next_ts()}
        )
    assert await harness.chat().find_sent(channel, "old-key") == ts
    assert slack.count("conversations.history") == 3  # 200 + 200 + 51
    assert await harness.chat(history_max_messages=300).find_sent(channel, "old-key") is None


async def test_a_rate_limit_becomes_a_retry_after(slack: FakeSlack, harness: Harness) -> None:
    general = slack.add_channel("general")
    slack.rate_limit("chat.postMessage", retry_after=7)
    with pytest.raises(ChatError) as caught:
        await harness.chat().send(ref(slack, general), CARD, "k")
    assert caught.value.retry_after_s == 7
    assert not caught.value.permanent
    assert general.messages == []
    assert harness.outcomes() == {Outcome.RATE_LIMITED: 1}


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        ("deleted", "deleted"),
        ("archived", "archived"),
        ("not_member", "/invite"),
        ("account_inactive", "deactivated"),
        ("bad_token", "bot_token"),
        ("revoked", "revoked"),
        ("missing_scope", "scope"),
    ],
)
async def test_errors_retrying_cannot_fix_are_permanent_with_a_clear_reason(
    slack: FakeSlack, harness: Harness, setup: str, words: str
) -> None:
    general = slack.add_channel("general", member=setup != "not_member")
    channel = ref(slack, general)
    options: dict[str, Any] = {}
    if setup == "deleted":
        slack.delete_channel(general.id)
    elif setup == "archived":
        general.archived = True
    elif setup in ("account_inactive", "missing_scope"):
        slack.fail("chat.postMessage", setup)
    elif setup == "bad_token":
        options["bot_token"] = "xoxb-wrong"
    elif setup == "revoked":
        slack.revoked = True
    with pytest.raises(ChatError) as caught:
        await harness.chat(**options).send(channel, CARD, "k")
    assert caught.value.permanent
    assert words in str(caught.value)
    assert "xoxb" not in str(caught.value)
    assert general.messages == []


async def test_an_answer_lost_on_the_way_back_is_found_before_posting_again(
    slack: FakeSlack, harness: Harness
) -> None:
    general = slack.add_channel("general")
    channel = ref(slack, general)
    chat = harness.chat()
    slack.lose_answer("chat.postMessage")
    with pytest.raises(ChatError) as caught:
        await chat.send(channel, CARD, "k")
    assert not caught.value.permanent
    assert len(general.messages) == 1  # Slack did post it
    ts = await chat.send(channel, CARD, "k")  # the dispatcher's retry
    assert ts == general.messages[0]["ts"]
    assert len(general.messages) == 1
    assert harness.outcomes()[Outcome.HTTP_5XX] == 1


async def test_a_timeout_is_classified_and_checked_before_the_retry(
    slack: FakeSlack, harness: Harness
) -> None:
    general = slack.add_channel("general")
    channel = ref(slack, general)
    chat = harness.chat(timeout_s=1)
    slack.delay("chat.postMessage", 1.5)
    with pytest.raises(ChatError):
        await chat.send(channel, CARD, "k")
    slack.delay("chat.postMessage", 0)
    await slack.wait_until(lambda: len(general.messages) == 1, within_s=3)
    await chat.send(channel, CARD, "k")
    assert len(general.messages) == 1
    assert harness.outcomes()[Outcome.TIMEOUT] == 1


async def test_unreadable_history_after_a_crash_is_checked_again_before_the_resend(
    slack: FakeSlack, harness: Harness
) -> None:
    general = slack.add_channel("general")
    channel = ref(slack, general)
    ts = await harness.chat().send(channel, CARD, "k")
    restarted = harness.chat()
    slack.fail("conversations.history", "fatal_error", status=503)
    assert await restarted.find_sent(channel, "k") is None
    assert await restarted.send(channel, CARD, "k") == ts
    assert len(general.messages) == 1


async def test_history_still_down_at_the_resend_defers_instead_of_posting(
    slack: FakeSlack, harness: Harness
) -> None:
    general = slack.add_channel("general")
    channel = ref(slack, general)
    await harness.chat().send(channel, CARD, "k")
    restarted = harness.chat()
    slack.fail("conversations.history", "fatal_error", times=2, status=503)
    assert await restarted.find_sent(channel, "k") is None
    with pytest.raises(ChatError) as caught:
        await restarted.send(channel, CARD, "k")
    assert not caught.value.permanent
    assert len(general.messages) == 1


async def test_an_image_slack_cannot_fetch_does_not_block_the_post(
    slack: FakeSlack, harness: Harness
) -> None:
    general = slack.add_channel("general")
    slack.bad_image_urls.add("https://starling.example/pic.png")
    await harness.chat().send(ref(slack, general), CARD, "k")
    (posted,) = general.messages
    assert [b["type"] for b in posted["blocks"]] == ["context", "section", "actions"]
    assert posted["metadata"]["event_payload"] == {"key": "k"}


async def test_edit_updates_the_card_and_delete_removes_it(
    slack: FakeSlack, harness: Harness
) -> None:
    general = slack.add_channel("general")
    channel = ref(slack, general)
    chat = harness.chat()
    ts = await chat.send(channel, CARD, "k")
    edited = RichMessage(text="Corrected <@U999>", title="Starling 1.0.1", network="feeds")
    await chat.edit(channel, ts, edited)
    (posted,) = general.messages
    assert "edited" in posted
    assert "Starling 1.0.1" in posted["blocks"][1]["text"]["text"]
    assert slack.pings == []
    await chat.delete(channel, ts)
    assert general.messages == []
    await chat.delete(channel, ts)  # already gone: nothing to do
    with pytest.raises(ChatError) as caught:
        await chat.edit(channel, ts, edited)
    assert caught.value.permanent


async def test_a_channel_of_another_workspace_is_refused(
    slack: FakeSlack, harness: Harness
) -> None:
    general = slack.add_channel("general")
    chat = harness.chat()
    await chat.fetch_identity()
    with pytest.raises(ChatError) as caught:
        await chat.send(ChannelRef("slack", f"T0OTHER/{general.id}"), CARD, "k")
    assert caught.value.permanent
    assert general.messages == []


async def test_messages_are_posted_as_the_bot(slack: FakeSlack, harness: Harness) -> None:
    general = slack.add_channel("general")
    await harness.chat().send(ref(slack, general), CARD, "k")
    assert general.messages[0]["bot_id"] == BOT_ID


# --- configuration -------------------------------------------------------------------


def _ctx(config: dict[str, Any]) -> PluginContext:
    clock = SystemClock()
    return PluginContext("slack", config, HealthBook(clock), clock, False, "data")


def test_pacing_defaults_to_one_message_per_second_per_channel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    chat = create(_ctx({"bot_token": "xoxb-1", "app_token": "xapp-1"}))
    assert chat.min_interval_s == 1.0
    assert chat.settings.api_url == "https://slack.com/api/"
    assert chat.settings.command == "/starling"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"app_token": "xapp-1"}, "bot_token is required"),
        ({"bot_token": "xoxb-1"}, "app_token is required"),
        ({"bot_token": "xoxb-1", "app_token": "xoxb-2"}, "starting with xapp-"),
        ({"bot_token": "xoxb-1", "mode": "http"}, "signing_secret is required"),
        ({"bot_token": "xoxb-1", "app_token": "xapp-1", "command": "/no spaces"}, "command"),
        ({"bot_token": "xoxb-1", "app_token": "xapp-1", "api_url": "slack.com"}, "api_url"),
        ({"bot_token": "xoxb-1", "app_token": "xapp-1", "tokne": "x"}, "tokne"),
    ],
)
def test_bad_config_names_the_option(
    monkeypatch: pytest.MonkeyPatch, config: dict[str, Any], message: str
) -> None:
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as caught:
        create(_ctx(config))
    assert message in str(caught.value)
    assert "xoxb-1" not in str(caught.value)


def test_slacks_own_env_names_are_a_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-from-slack-env")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-from-slack-env")
    chat = create(_ctx({"app_token": "xapp-starling"}))
    assert chat.settings.bot_token.get_secret_value() == "xoxb-from-slack-env"
    assert chat.settings.app_token.get_secret_value() == "xapp-starling"
    assert "xoxb" not in repr(chat.settings)
