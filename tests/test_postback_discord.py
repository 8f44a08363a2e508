"""Post back from Discord: /post, then Approve / Reject / Delete buttons, as members see them.

The whole bot runs with the Discord chat (the real discord.py client) against the local
Discord, and posts to the fake Mastodon, the fake X and a real nostr relay. A click is
an INTERACTION_CREATE of type 3 carrying the button's custom_id; the answer goes to
the clicker only, and the request message shows the decision to everyone. Buttons
keep working after a restart because the custom_id holds all a click needs.
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
from tests.fakes.discord_server import Channel, DiscordServer
from tests.postback_networks import Networks, networks, statuses

pytestmark = pytest.mark.slow
__all__ = ["networks"]  # the fixture, imported so pytest finds it here

ADA = "80351110224678912"  # the member the local Discord sends by default
GRACE = "41771983423143937"  # an approver
TEXT = "Hello team, from Discord"


@pytest_asyncio.fixture
async def discord_server() -> AsyncIterator[DiscordServer]:
    async with DiscordServer() as server:
        yield server


Start = Callable[..., Awaitable[App]]


@pytest_asyncio.fixture
async def start(
    tmp_path: Path, discord_server: DiscordServer, networks: Networks
) -> AsyncIterator[Start]:
    guild = discord_server.add_guild()
    running: list[tuple[App, asyncio.Task[None]]] = []

    async def begin(approvers: list[str] | None = None, **overrides: Any) -> App:
        options: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "chats": ["discord"],
            "allow_private_addresses": True,
            "shutdown_grace_s": 2.0,
            "min_interval_s": 0.1,
            "jitter": 0.0,
            "postback_targets": {"*": ["mastodon", "nostr", "x"]},
            "postback_approval": ["*"],
            "postback_approvers": approvers or [GRACE],
            "discord": {
                "token": discord_server.token,
                "api_url": discord_server.api_url,
                "guild_ids": guild.id,
                "min_interval_s": "0",
            },
            **networks.settings(),
        }
        settings = load_settings(**{**options, **overrides})
        app = await App.create(settings)
        task = asyncio.create_task(app.run())
        running.append((app, task))
        await discord_server.wait_connected()
        async with asyncio.timeout(10):
            while not discord_server.commands.get(guild.id):
                await asyncio.sleep(0.02)
        return app

    yield begin
    for app, task in running:
        if not task.done():
            app.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 30)


async def restart(discord_server: DiscordServer, app: App, start: Start, **options: Any) -> App:
    app.stop()
    await asyncio.sleep(0.2)
    discord_server.commands.clear()
    return await start(**options)


def channel_of(discord_server: DiscordServer) -> Channel:
    guild = next(iter(discord_server.guilds.values()))
    if not guild.channels:
        return discord_server.add_channel(guild, "general")
    return discord_server.channels[guild.channels[0]]


def plain(shown: tuple[str, bool]) -> tuple[str, bool]:
    """The text as a member reads it: markdown escapes and zero-width characters do not show."""
    text = re.sub(r"\\(.)", r"\1", shown[0]).replace("\u200b", "").replace("\u2060", "")
    return text, shown[1]


async def post(discord_server: DiscordServer, channel: Channel, text: str) -> tuple[str, bool]:
    log = await discord_server.invoke(channel, "post", [{"name": "text", "type": 3, "value": text}])
    (shown,) = await log.wait_shown(within_s=20)
    return plain(shown)


async def click(
    discord_server: DiscordServer,
    channel: Channel,
    message: dict[str, Any],
    label: str,
    user: str = ADA,
) -> tuple[str, bool]:
    """Click `label` as `user`; what that member is shown (text, ephemeral)."""
    name = "grace" if user == GRACE else "ada"
    log = await discord_server.click(channel, message, label, user_id=user, username=name)
    await log.answer(within_s=3.0)
    shown = await log.wait_shown(within_s=20)
    return plain(shown[-1])


def buttons(message: dict[str, Any]) -> list[str]:
    return [c["label"] for row in message.get("components") or [] for c in row["components"]]


def shown_text(message: dict[str, Any]) -> str:
    """Every embed's title, text and footer as a member reads them."""
    parts = []
    for embed in message.get("embeds") or []:
        parts += [embed.get("title", ""), embed.get("description", "")]
        parts.append((embed.get("footer") or {}).get("text", ""))
    return plain(("\n".join(parts), False))[0]


def request(discord_server: DiscordServer, channel: Channel, number: int) -> dict[str, Any]:
    """Request #number as a member's client shows it now (a copy, as a stale client keeps)."""
    found = [
        m
        for m in discord_server.messages_in(channel)
        if f"Post request #{number} " in shown_text(m)
    ]
    assert found, f"no request #{number} in {discord_server.messages_in(channel)}"
    return copy.deepcopy(found[0])


async def test_buttons_approve_after_a_restart_refuse_self_approval_and_delete(
    start: Start, discord_server: DiscordServer, networks: Networks
) -> None:
    app = await start()
    general = channel_of(discord_server)
    answer, private = await post(discord_server, general, TEXT)
    assert private
    assert answer.startswith("Asked for approval: request #1")
    asked = request(discord_server, general, 1)
    assert buttons(asked) == ["Approve", "Reject"]
    assert "mastodon: Hello team" in shown_text(asked)  # the per-network preview

    assert (
        "only approvers can approve" in (await click(discord_server, general, asked, "Approve"))[0]
    )

    # After a restart, with the author now an approver too: still no self-approval.
    app = await restart(discord_server, app, start, approvers=[GRACE, ADA])
    mine, private = await click(discord_server, general, asked, "Approve")
    assert private
    assert "cannot approve your own post" in mine
    assert await networks.copies(TEXT) == (0, 0, 0)

    approved, private = await click(discord_server, general, asked, "Approve", GRACE)
    assert private, "the clicker alone is told; the request message shows everyone"
    assert re.search(r"^Approved #1: mastodon: https://\S+; nostr: \S+; x: https://\S+", approved)
    assert await networks.copies(TEXT) == (1, 1, 1)
    shown = request(discord_server, general, 1)
    assert f"Approved by grace ({GRACE}) at " in shown_text(shown)
    assert buttons(shown) == ["Delete"]

    again, _ = await click(discord_server, general, asked, "Approve", GRACE)
    assert f"already approved by grace ({GRACE}) at " in again
    assert await networks.copies(TEXT) == (1, 1, 1)

    removed, private = await click(discord_server, general, shown, "Delete")
    assert private
    assert removed == "Removed post #1 from mastodon, nostr, x."
    assert statuses(networks.mastodon, TEXT) == []
    assert buttons(request(discord_server, general, 1)) == []
    twice, _ = await click(discord_server, general, shown, "Delete")
    assert f"already removed by ada ({ADA})" in twice
    assert discord_server.invalid_bodies == []  # every request matched Discord's API spec


async def test_reject_posts_nothing(
    start: Start, discord_server: DiscordServer, networks: Networks
) -> None:
    await start()
    general = channel_of(discord_server)
    await post(discord_server, general, "Not this one")
    asked = request(discord_server, general, 1)
    rejected, private = await click(discord_server, general, asked, "Reject", GRACE)
    assert private
    assert rejected == "Rejected request #1; nothing was posted."
    assert f"Rejected by grace ({GRACE}) at " in shown_text(request(discord_server, general, 1))
    assert buttons(request(discord_server, general, 1)) == []
    late, _ = await click(discord_server, general, asked, "Approve", GRACE)
    assert "already rejected by" in late
    assert await networks.copies("Not this one") == (0, 0, 0)
    assert discord_server.invalid_bodies == []


# --- the composer: message context menus and the preview modal ---------------------------

NETWORKS_FIELD = "Networks (comma separated, optional)"


async def test_reply_from_a_relayed_post_previews_then_replies_on_mastodon(
    start: Start, discord_server: DiscordServer, networks: Networks
) -> None:
    mastodon = networks.mastodon
    alice = mastodon.add_account("alice", display_name="Alice")
    await start(postback_approval=[])
    general = channel_of(discord_server)
    log = await discord_server.invoke(
        general,
        "follow",
        [
            {"name": "network", "type": 3, "value": "mastodon"},
            {"name": "target", "type": 3, "value": alice["acct"]},
            {"name": "every", "type": 3, "value": "1s"},
        ],
    )
    assert "as #1" in plain((await log.wait_shown(within_s=20))[0])[0]
    original = mastodon.post("alice", "Birds are back in town")
    async with asyncio.timeout(20):
        while not discord_server.messages_in(general):
            await asyncio.sleep(0.05)
    relayed = discord_server.messages_in(general)[0]

    menu = await discord_server.message_command(general, "Post a reply from Starling", relayed)
    assert (await menu.answer())["type"] == 9  # the modal
    too_long = await discord_server.submit_modal(
        menu, {"Your reply": "x" * 600, NETWORKS_FIELD: "mastodon"}
    )
    (refused,) = await too_long.wait_shown()
    assert refused[1]
    assert "mastodon: 600 characters" in plain(refused)[0]

    # A submitted modal is closed (Discord has no "errors" answer): the member opens it again.
    menu = await discord_server.message_command(general, "Post a reply from Starling", relayed)
    submitted = await discord_server.submit_modal(
        menu, {"Your reply": "Welcome back!", NETWORKS_FIELD: "mastodon"}
    )
    (shown,) = await submitted.wait_shown()
    assert plain(shown) == ("Preview, nothing is posted yet:\nmastodon: Welcome back!", True)
    assert statuses(mastodon, "Welcome back!") == []
    assert submitted.original is not None
    assert buttons(submitted.original) == ["Post"]

    answer, private = await click(discord_server, general, submitted.original, "Post")
    assert not private
    assert answer.startswith("Post #1: mastodon: https://")
    (reply,) = statuses(mastodon, "Welcome back!")
    assert reply["in_reply_to_id"] == original["id"]
    again, _ = await click(discord_server, general, submitted.original, "Post")
    assert again.startswith("This preview has expired")
    assert len(statuses(mastodon, "Welcome back!")) == 1
    assert discord_server.invalid_bodies == []


async def test_the_menus_refuse_a_message_that_is_not_a_relayed_post(
    start: Start, discord_server: DiscordServer
) -> None:
    await start()
    general = channel_of(discord_server)
    await post(discord_server, general, "A request, not a relayed post")
    menu = await discord_server.message_command(
        general, "Quote on…", request(discord_server, general, 1)
    )
    (shown,) = await menu.wait_shown()
    assert plain(shown) == (
        "Starling can only reply to or quote a post it relayed; this message is not one.",
        True,
    )


async def test_post_without_text_opens_the_composer(
    start: Start, discord_server: DiscordServer
) -> None:
    await start()
    general = channel_of(discord_server)
    log = await discord_server.invoke(general, "post", [])
    assert (await log.answer())["type"] == 9
    submitted = await discord_server.submit_modal(
        log, {"Text": "Spring is here", NETWORKS_FIELD: "nostr, x"}
    )
    (shown,) = await submitted.wait_shown()
    assert plain(shown)[0] == (
        "Preview, nothing is posted yet:\nnostr: Spring is here\nx: Spring is here"
    )


async def test_a_direct_post_answer_has_a_delete_button_that_goes_once_used(
    start: Start, discord_server: DiscordServer, networks: Networks
) -> None:
    await start(postback_approval=[])
    general = channel_of(discord_server)
    log = await discord_server.invoke(
        general,
        "post",
        [
            {"name": "text", "type": 3, "value": "Straight out"},
            {"name": "to", "type": 3, "value": "mastodon"},
        ],
    )
    await log.wait_shown(within_s=20)
    (answer,) = [
        m
        for m in discord_server.messages_in(general)
        if plain((m["content"], False))[0].startswith("Post #1: mastodon: https://")
    ]
    assert buttons(answer) == ["Delete"]
    assert len(statuses(networks.mastodon, "Straight out")) == 1

    removed, _ = await click(discord_server, general, copy.deepcopy(answer), "Delete", GRACE)
    assert removed == "Removed post #1 from mastodon.", "an approver may remove it too"
    assert statuses(networks.mastodon, "Straight out") == []
    async with asyncio.timeout(5):
        while buttons(answer):  # the answer itself, as everyone now sees it
            await asyncio.sleep(0.05)
    assert discord_server.invalid_bodies == []


async def click_with_roles(
    discord_server: DiscordServer,
    channel: Channel,
    message: dict[str, Any],
    label: str,
    roles: list[str],
) -> list[tuple[str, bool]]:
    """Grace clicks `label` holding `roles`; everything she is shown."""
    log = await discord_server.click(
        channel, message, label, user_id=GRACE, username="grace", roles=roles
    )
    await log.answer(within_s=3.0)
    return [plain(shown) for shown in await log.wait_shown(within_s=20)]


async def test_an_approver_by_role_approves_and_a_member_without_it_is_refused(
    start: Start, discord_server: DiscordServer, networks: Networks
) -> None:
    guild = next(iter(discord_server.guilds.values()))
    editors = discord_server.add_role(guild, "editors")  # listed in GUILD_CREATE
    other = discord_server.add_role(guild, "readers")
    await start(approvers=[f"role:{editors}"])
    general = channel_of(discord_server)
    answer, _ = await post(discord_server, general, TEXT)
    assert answer.startswith("Asked for approval: request #1")
    asked = request(discord_server, general, 1)

    refused = await click_with_roles(discord_server, general, asked, "Approve", [other])
    assert refused == [("/approve: only approvers can approve posts here", True)]
    assert await networks.copies(TEXT) == (0, 0, 0)

    ((approved, private),) = await click_with_roles(
        discord_server, general, asked, "Approve", [other, editors]
    )
    assert private
    assert approved.startswith("Approved #1: mastodon: https://")
    assert await networks.copies(TEXT) == (1, 1, 1)
    assert f"Approved by grace ({GRACE}) at " in shown_text(request(discord_server, general, 1))


async def test_a_direct_poster_by_role_posts_without_asking(
    start: Start, discord_server: DiscordServer, networks: Networks
) -> None:
    guild = next(iter(discord_server.guilds.values()))
    authors = discord_server.add_role(guild, "authors")
    await start(postback_direct_posters=[f"role:{authors}"])
    general = channel_of(discord_server)
    text = [{"name": "text", "type": 3, "value": TEXT}]

    log = await discord_server.invoke(general, "post", text)
    (asked,) = await log.wait_shown(within_s=20)
    assert plain(asked)[0].startswith("Asked for approval: request #1")

    log = await discord_server.invoke(general, "post", text, roles=[authors])
    (posted,) = await log.wait_shown(within_s=20)
    assert re.search(
        r"^Post #2: mastodon: https://\S+; nostr: \S+; x: https://\S+", plain(posted)[0]
    )
    assert await networks.copies(TEXT) == (1, 1, 1)
