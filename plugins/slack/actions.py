"""Buttons under Starling's Slack messages: Approve, Reject, Delete.

A button carries its command in its `action_id` (`starling_cmd:<command>`) and the
arguments in its `value`, so a click still works after a restart. The click runs
the same server-side command as a typed one, as the member who clicked, so every
permission is checked again; the answer goes to that member only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext

from bot.model import Action
from bot.protocols import CommandService, Invocation, ReplyKind
from plugins.slack.api import SlackFailure
from plugins.slack.format import COMMAND_ACTION, action_blocks, reply_text

if TYPE_CHECKING:
    from plugins.slack.chat import Identity, SlackChat

log = logging.getLogger(__name__)

# Who Starling is in the workspace a request came from (one workspace, or OAuth's per request).
Who = Callable[[AsyncBoltContext], "Identity"]

# Only commands a button may run; anything else in a forged payload is refused.
CLICKABLE = frozenset({"approve", "reject", "undo"})


def register(app: AsyncApp, chat: SlackChat, commands: CommandService, who: Who) -> None:
    """Handle `block_actions` from Starling's command buttons (Socket Mode and HTTP alike)."""

    async def on_click(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()  # within Slack's 3 s; the answer follows through the response_url
        await run_click(chat, commands, who(context), body)

    app.action(re.compile("^" + re.escape(COMMAND_ACTION)))(on_click)


async def run_click(
    chat: SlackChat, commands: CommandService, identity: Identity, body: dict[str, Any]
) -> None:
    action = (body.get("actions") or [{}])[0]
    command = str(action.get("action_id") or "").removeprefix(COMMAND_ACTION)
    args = str(action.get("value") or "")
    user = str((body.get("user") or {}).get("id") or "")
    channel = body.get("channel") or {}
    channel_id = str(channel.get("id") or (body.get("container") or {}).get("channel_id") or "")
    prefix = chat.settings.command
    if command not in CLICKABLE or not channel_id:
        await answer(chat, body, "This button does nothing any more.", True)
        return
    ref = chat.channel_ref(identity.team_id, channel_id, str(channel.get("name") or ""))
    try:
        roles = await chat.user_groups.of(user)
        reply = await commands.handle(Invocation(ref, user, command, args, roles))
    except Exception:
        log.exception("the %s button failed", command)
        await answer(chat, body, f"{prefix} {command}: something went wrong; it is logged", True)
        return
    if reply.kind is ReplyKind.UNDONE:
        await _retire_delete_button(chat, body)
    # The message the button sits on shows the outcome to everyone; the clicker is told alone.
    await answer(chat, body, reply_text(reply.text, prefix, commands.command_names()), True)


async def _retire_delete_button(chat: SlackChat, body: dict[str, Any]) -> None:
    """The post is gone, so its answer loses the Delete button (through the click's
    response_url). A request message is left alone: the core edits it itself."""
    message = body.get("message") or {}
    url = str(body.get("response_url") or "")
    if not message or str(message.get("text", "")).startswith("Post request #"):
        return
    kept = [
        block
        for block in message.get("blocks") or []
        if not (
            block.get("type") == "actions"
            and any(
                str(e.get("action_id", "")).startswith(COMMAND_ACTION)
                for e in block.get("elements") or []
            )
        )
    ]
    if url.startswith(("https://", "http://")):
        update = {"replace_original": True, "text": message.get("text") or "", "blocks": kept}
        await chat.api.post_response(url, update)


def reply_blocks(text: str, actions: tuple[Action, ...]) -> list[dict[str, Any]]:
    """An already escaped reply with buttons under it."""
    shown = text if len(text) <= 3000 else text[:2999] + "…"
    section = {"type": "section", "text": {"type": "mrkdwn", "text": shown, "verbatim": True}}
    return [section, *action_blocks(actions)]


async def answer(
    chat: SlackChat,
    body: dict[str, Any],
    text: str,
    ephemeral: bool,
    actions: tuple[Action, ...] = (),
) -> None:
    """Reply with already escaped `text` through the response_url (a new message, never
    replacing the clicked one); if that fails, through the Web API. Serves slash
    commands, buttons and the composer alike."""
    payload: dict[str, Any] = {
        "text": text,
        "response_type": "ephemeral" if ephemeral else "in_channel",
        "replace_original": False,
    }
    if actions:
        payload["blocks"] = reply_blocks(text, actions)
    url = str(body.get("response_url") or "")
    if url.startswith(("https://", "http://")) and await chat.api.post_response(url, payload):
        return
    channel = str(
        (body.get("channel") or {}).get("id")
        or body.get("channel_id")
        or (body.get("container") or {}).get("channel_id")
        or ""
    )
    user = str((body.get("user") or {}).get("id") or body.get("user_id") or "")
    message: dict[str, Any] = {"channel": channel, "text": text}
    if actions:
        message["blocks"] = payload["blocks"]
    try:
        if ephemeral:
            await chat.api.call("chat.postEphemeral", json={**message, "user": user})
        else:
            await chat.api.call("chat.postMessage", json=message)
    except SlackFailure as failure:
        log.warning("could not answer a Slack member in %s: %s", channel, failure)
