"""Post back from Slack: Approve / Reject / Delete buttons, as members see them.

The whole bot runs with the Slack chat against the local Slack (Socket Mode, and a
signed HTTP Request URL), and posts to the fake Mastodon, the fake X and a real
nostr relay. Each click is a `block_actions` payload, answered to the clicker
only; the request message shows the decision to everyone. Buttons keep working
after a restart because everything a click needs is in the button.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.app import App
from bot.config import load_settings
from plugins.slack import SlackChat
from tests.fakes.slack_server import MEMBER, FakeChannel, FakeSlack
from tests.postback_networks import Networks, networks, statuses

__all__ = ["networks"]  # the fixture, imported so pytest finds it here

pytestmark = pytest.mark.slow

APPROVER = "U0APPROVER"
TEXT = "Hello team, from Slack"


@pytest_asyncio.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


Start = Callable[..., Awaitable[App]]


@pytest_asyncio.fixture
async def start(
    tmp_path: Path, slack: FakeSlack, networks: Networks, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Start]:
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)
    running: list[tuple[App, asyncio.Task[None]]] = []

    async def begin(approvers: list[str] | None = None, **overrides: Any) -> App:
        options: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "chats": ["slack"],
            "allow_private_addresses": True,
            "shutdown_grace_s": 2.0,
            "min_interval_s": 0.1,
            "jitter": 0.0,
            "postback_targets": {"*": ["mastodon", "nostr", "x"]},
            "postback_approval": ["*"],
            "postback_approvers": approvers or [APPROVER],
            "slack": slack.plugin_config(min_interval_s=0.05),
            **networks.settings(),
        }
        settings = load_settings(**{**options, **overrides})
        app = await App.create(settings)
        task = asyncio.create_task(app.run())
        running.append((app, task))
        chat = app.chats["slack"]
        assert isinstance(chat, SlackChat)
        await asyncio.wait_for(chat.connected.wait(), 10)
        return app

    yield begin
    for app, task in running:
        if not task.done():
            app.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 30)


async def stop(app: App) -> None:
    app.stop()
    await asyncio.sleep(0)


async def command(slack: FakeSlack, channel: FakeChannel, text: str, user: str = MEMBER) -> str:
    sent = await slack.slash_command(text, channel=channel, user=user)
    return str((await slack.wait_response(sent.response_id, within_s=20))["text"])


async def click(
    slack: FakeSlack, channel: FakeChannel, message: dict[str, Any], label: str, user: str
) -> dict[str, Any]:
    """Click `label` as `user`; the answer only they see."""
    clicked = await slack.click(channel, message, label, user=user)
    return await slack.wait_response(clicked.response_id, within_s=20)


def buttons(message: dict[str, Any]) -> list[str]:
    return [
        element["text"]["text"]
        for block in message.get("blocks") or []
        if block["type"] == "actions"
        for element in block["elements"]
        if "url" not in element
    ]


def footer(message: dict[str, Any]) -> str:
    contexts = [b for b in message.get("blocks") or [] if b["type"] == "context"]
    return str(contexts[-1]["elements"][0]["text"])


def request(channel: FakeChannel, number: int) -> dict[str, Any]:
    """Request #number as a member's client shows it now (a copy: later edits do not change
    what a stale client still shows)."""
    found = [m for m in channel.bot_messages() if f"Post request #{number} " in str(m["blocks"])]
    assert found, f"no request #{number} in {channel.bot_messages()}"
    return copy.deepcopy(found[0])


async def test_approve_after_a_restart_publishes_once_everywhere_and_delete_undoes_it(
    start: Start, slack: FakeSlack, networks: Networks
) -> None:
    general = slack.add_channel("general")
    app = await start()
    answer = await command(slack, general, f"post {TEXT}")
    assert answer.startswith("Asked for approval: request #1")
    asked = request(general, 1)
    assert buttons(asked) == ["Approve", "Reject"]
    assert "mastodon: Hello team" in str(asked["blocks"])  # the per-network preview

    refused = await click(slack, general, asked, "Approve", MEMBER)
    assert refused["response_type"] == "ephemeral"
    assert "only approvers can approve" in refused["text"]
    await stop(app)

    # After a restart, and with the author now an approver too: still no self-approval.
    await start(approvers=[APPROVER, MEMBER])
    mine = await click(slack, general, asked, "Approve", MEMBER)
    assert "cannot approve your own post" in mine["text"]
    assert await networks.copies(TEXT) == (0, 0, 0)

    approved = await click(slack, general, asked, "Approve", APPROVER)
    assert approved["response_type"] == "ephemeral"
    assert approved["text"].startswith("Approved #1: ")
    assert re.search(r"mastodon: https://\S+; nostr: \S+; x: https://\S+", approved["text"])
    assert await networks.copies(TEXT) == (1, 1, 1)
    shown = request(general, 1)
    assert f"Approved by {APPROVER} at " in footer(shown)
    assert buttons(shown) == ["Delete"]

    # A second click on the old Approve button (another member's stale client).
    again = await click(slack, general, asked, "Approve", APPROVER)
    assert f"already approved by {APPROVER} at " in again["text"]
    assert await networks.copies(TEXT) == (1, 1, 1)

    removed = await click(slack, general, shown, "Delete", MEMBER)
    assert removed["text"] == "Removed post #1 from mastodon, nostr, x."
    assert statuses(networks.mastodon, TEXT) == []
    assert f"Removed by {MEMBER} at " in footer(request(general, 1))
    assert buttons(request(general, 1)) == []
    twice = await click(slack, general, shown, "Delete", MEMBER)
    assert f"already removed by {MEMBER}" in twice["text"]


async def test_reject_posts_nothing_and_a_direct_post_has_a_delete_button(
    start: Start, slack: FakeSlack, networks: Networks
) -> None:
    general = slack.add_channel("general")
    await start()
    await command(slack, general, "post Not this one")
    asked = request(general, 1)
    rejected = await click(slack, general, asked, "Reject", APPROVER)
    assert rejected["text"] == "Rejected request #1; nothing was posted."
    assert f"Rejected by {APPROVER} at " in footer(request(general, 1))
    assert buttons(request(general, 1)) == []
    late = await click(slack, general, asked, "Approve", APPROVER)
    assert "already rejected by" in late["text"]
    assert await networks.copies("Not this one") == (0, 0, 0)

    sent = await slack.slash_command(
        "post --to mastodon Straight out", channel=general, user=APPROVER
    )
    answer = await slack.wait_response(sent.response_id, within_s=20)
    assert answer["response_type"] == "in_channel"
    assert answer["text"].startswith("Post #2: mastodon: https://")
    assert buttons(answer) == ["Delete"]
    assert await networks.copies("Straight out") == (1, 0, 0)
    stranger = await click(slack, general, answer | {"ts": "1.0"}, "Delete", "U0STRANGER")
    assert "only its author or an approver can remove post #2" in stranger["text"]
    clicked = await slack.click(general, answer | {"ts": "1.0"}, "Delete", user=APPROVER)
    await slack.wait_until(lambda: len(slack.responses_for(clicked.response_id)) == 2)
    replaced, removed = slack.responses_for(clicked.response_id)
    assert removed["text"] == "Removed post #2 from mastodon."
    assert replaced["replace_original"] is True, "the answer loses its Delete button"
    assert buttons(replaced) == []
    assert replaced["text"] == answer["text"]
    assert await networks.copies("Straight out") == (0, 0, 0)


# --- the composer: message shortcuts and the preview modal ------------------------------


async def test_reply_from_a_relayed_post_previews_then_replies_on_mastodon(
    start: Start, slack: FakeSlack, networks: Networks
) -> None:
    general = slack.add_channel("general")
    mastodon = networks.mastodon
    alice = mastodon.add_account("alice", display_name="Alice")
    await start(postback_approval=[])
    followed = await command(slack, general, f"follow mastodon {alice['acct']} --every 1s")
    assert "as #1" in followed
    original = mastodon.post("alice", "Birds are back in town")
    await slack.wait_until(lambda: len(general.bot_messages()) == 1, within_s=20)
    relayed = general.bot_messages()[0]

    await slack.message_shortcut(general, relayed, "starling_reply")
    (modal,) = slack.views
    assert original["url"] in str(modal["blocks"][0])  # "Replying to <link>"

    too_long = await slack.submit_view({"text": "x" * 600, "to": "mastodon"})
    assert too_long["response_action"] == "errors"
    assert "mastodon: 600 characters" in too_long["errors"]["text"]
    assert len(slack.views) == 1, "the form stays open to fix the text"

    shown = await slack.submit_view({"text": "Welcome back!", "to": "mastodon"})
    assert shown["response_action"] == "update"
    preview = shown["view"]["blocks"][0]["text"]["text"]
    assert preview == "Preview, nothing is posted yet:\nmastodon: Welcome back!"
    assert statuses(mastodon, "Welcome back!") == []

    done = await slack.submit_view({})
    assert done == {}
    assert slack.views == []
    await slack.wait_until(lambda: len(general.bot_messages()) == 2, within_s=20)
    answer = general.bot_messages()[-1]
    assert answer["text"].startswith("Post #1: mastodon: https://")
    assert buttons(answer) == ["Delete"]
    (reply,) = statuses(mastodon, "Welcome back!")
    assert reply["in_reply_to_id"] == original["id"]


async def test_shortcuts_on_a_message_starling_did_not_relay_say_so(
    start: Start, slack: FakeSlack
) -> None:
    general = slack.add_channel("general")
    await start(postback_approval=[])
    human = {"type": "message", "user": MEMBER, "text": "hello", "ts": "1700000000.000100"}
    response_id = await slack.message_shortcut(general, human, "starling_quote")
    answer = await slack.wait_response(response_id)
    assert answer["response_type"] == "ephemeral"
    assert answer["text"].startswith("Starling can only reply to or quote a post it relayed")
    assert slack.views == []


async def test_starling_post_alone_opens_the_composer(start: Start, slack: FakeSlack) -> None:
    general = slack.add_channel("general")
    await start()
    await slack.slash_command("post", channel=general)
    await slack.wait_until(lambda: len(slack.views) == 1)
    shown = await slack.submit_view({"text": "Spring is here", "to": "nostr,x"})
    preview = shown["view"]["blocks"][0]["text"]["text"]
    assert preview == ("Preview, nothing is posted yet:\nnostr: Spring is here\nx: Spring is here")


async def test_in_http_mode_a_signed_click_approves_and_a_forged_one_does_nothing(
    start: Start, slack: FakeSlack, networks: Networks
) -> None:
    general = slack.add_channel("general")
    config = slack.plugin_config(
        min_interval_s=0.05, mode="http", http_host="127.0.0.1", http_port=0
    )
    app = await start(slack=config)
    chat = app.chats["slack"]
    assert isinstance(chat, SlackChat)
    endpoint = f"http://127.0.0.1:{chat.http_port}/slack/events"
    status, _, response_id = await slack.http_command(endpoint, f"post {TEXT}", channel=general)
    assert status == 200
    assert (await slack.wait_response(response_id))["text"].startswith("Asked for approval")
    asked = request(general, 1)

    real_secret = slack.signing_secret
    slack.signing_secret = "not-the-secret"
    forged, forged_id = await slack.http_click(endpoint, general, asked, "Approve", user=APPROVER)
    slack.signing_secret = real_secret
    assert forged == 401

    status, response_id = await slack.http_click(endpoint, general, asked, "Approve", user=APPROVER)
    assert status == 200
    approved = await slack.wait_response(response_id, within_s=20)
    assert approved["text"].startswith("Approved #1: ")
    assert slack.responses_for(forged_id) == []
    assert await networks.copies(TEXT) == (1, 1, 1)


async def test_a_network_that_is_down_gets_its_part_later_and_the_channel_is_told(
    start: Start, slack: FakeSlack, networks: Networks
) -> None:
    general = slack.add_channel("general")
    await start(postback_approval=[], postback_retry_s=0.3, postback_check_s=0.2)
    await asyncio.to_thread(networks.relay.stop)
    text = "Going out in parts"
    answer = await command(slack, general, f"post --to mastodon,nostr {text}")
    assert re.fullmatch(
        r"Post #1: mastodon: https://\S+; nostr did not take it yet \(.+\); will retry", answer
    ), answer
    assert len(statuses(networks.mastodon, text)) == 1
    await asyncio.to_thread(networks.relay.start)  # the same port and database

    def told() -> list[dict[str, Any]]:
        return [m for m in general.bot_messages() if "sent late" in m["text"]]

    await slack.wait_until(lambda: bool(told()), within_s=30)
    (late,) = told()  # once: retries that fail again while it is down stay quiet
    assert late["text"].startswith("Post #1, sent late: nostr: https://njump.me/")
    assert await networks.copies(text) == (1, 0, 1)


def group_lookups(slack: FakeSlack) -> list[str]:
    return [str(args.get("usergroup")) for m, args in slack.calls if m == "usergroups.users.list"]


async def test_an_approver_by_user_group_approves_and_a_member_outside_it_is_refused(
    start: Start, slack: FakeSlack, networks: Networks
) -> None:
    general = slack.add_channel("general")
    slack.usergroups["S0EDITORS"] = [APPROVER]
    slack.usergroups["S0UNUSED"] = [MEMBER]  # named nowhere: never looked up
    await start(approvers=["group:S0EDITORS"])
    answer = await command(slack, general, f"post {TEXT}")
    assert answer.startswith("Asked for approval: request #1")
    asked = request(general, 1)

    refused = await click(slack, general, asked, "Approve", MEMBER)
    assert refused["response_type"] == "ephemeral"
    assert refused["text"].endswith("approve: only approvers can approve posts here")
    assert "\n" not in refused["text"]
    assert await networks.copies(TEXT) == (0, 0, 0)

    approved = await click(slack, general, asked, "Approve", APPROVER)
    assert approved["response_type"] == "ephemeral"
    assert approved["text"].startswith("Approved #1: ")
    assert await networks.copies(TEXT) == (1, 1, 1)
    assert f"Approved by {APPROVER} at " in footer(request(general, 1))
    assert group_lookups(slack) == ["S0EDITORS"]  # one call, cached for every later check


async def test_a_direct_poster_by_user_group_posts_without_asking(
    start: Start, slack: FakeSlack, networks: Networks
) -> None:
    general = slack.add_channel("general")
    slack.usergroups["S0AUTHORS"] = [MEMBER]
    await start(postback_direct_posters=["group:S0AUTHORS"])
    answer = await command(slack, general, f"post {TEXT}")
    assert re.search(r"^Post #1: mastodon: https://\S+; nostr: \S+; x: https://\S+", answer)
    assert await networks.copies(TEXT) == (1, 1, 1)
    asked = await command(slack, general, "post Someone else", user="U0OUTSIDER")
    assert asked.startswith("Asked for approval: request #2")


async def test_without_the_usergroups_scope_nobody_is_in_a_group_and_the_log_says_so_once(
    start: Start, slack: FakeSlack, networks: Networks, caplog: pytest.LogCaptureFixture
) -> None:
    general = slack.add_channel("general")
    slack.usergroups["S0AUTHORS"] = [MEMBER]
    slack.missing_scopes.add("usergroups:read")
    await start(postback_direct_posters=["group:S0AUTHORS"])
    first = await command(slack, general, "post One")
    second = await command(slack, general, "post Two")
    assert first.startswith("Asked for approval: request #1")
    assert second.startswith("Asked for approval: request #2")
    told = [r for r in caplog.records if "usergroups:read" in r.getMessage()]
    assert len(told) == 1
