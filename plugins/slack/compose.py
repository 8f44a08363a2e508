"""The Slack composer: message shortcuts and a modal that previews before posting.

"Post a reply from Starling" and "Quote on…" (message shortcuts on a relayed post)
and `/starling post` with no text open a modal. Its first submit shows what each
network will receive (the core's `/post --preview`, so every check runs on the
server); the second posts, exactly as `/post` would. Everything the modal needs is
in its `private_metadata`, so nothing is kept in memory between the steps.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext

from bot.postback import PostRequest, format_post
from bot.protocols import CommandService, Draft, Invocation, ReplyKind
from plugins.slack import actions
from plugins.slack.api import SlackFailure
from plugins.slack.format import OPEN_ACTION, escape_within, reply_text, safe_url

if TYPE_CHECKING:
    from plugins.slack.chat import Identity, SlackChat

log = logging.getLogger(__name__)

REPLY_SHORTCUT = "starling_reply"
QUOTE_SHORTCUT = "starling_quote"
COMPOSE_VIEW = "starling_compose"
CONFIRM_VIEW = "starling_confirm"
TEXT_LIMIT = 2500  # keeps the whole /post line inside private_metadata (3000)
ERROR_LIMIT = 300
PREVIEW_BUDGET_S = 2.5


def register(app: AsyncApp, chat: SlackChat, commands: CommandService, who: actions.Who) -> None:
    """Message shortcuts and the two modal steps, over Socket Mode and HTTP alike."""

    async def on_shortcut(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()
        await open_for_message(chat, who(context), body)

    async def on_preview(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        await preview(chat, commands, who(context), ack, body)

    async def on_confirm(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()  # closes the modal; the answer follows as a message
        await confirm(chat, commands, who(context), body)

    app.shortcut(REPLY_SHORTCUT)(on_shortcut)
    app.shortcut(QUOTE_SHORTCUT)(on_shortcut)
    app.view(COMPOSE_VIEW)(on_preview)
    app.view(CONFIRM_VIEW)(on_confirm)


def relayed_link(message: dict[str, Any], identity: Identity) -> str:
    """The post a message of Starling's relayed (its "Open" button), or ""."""
    if message.get("bot_id") != identity.bot_id:
        return ""
    buttons = [
        element
        for block in message.get("blocks") or []
        if block.get("type") == "actions"
        for element in block.get("elements") or []
    ]
    for button in buttons:
        if button.get("action_id") == OPEN_ACTION and safe_url(str(button.get("url"))):
            return str(button["url"])
    return ""


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": False}


def compose_view(channel_id: str, mode: str, url: str) -> dict[str, Any]:
    """Step one: the text (and optional networks) for a new post, reply or quote."""
    blocks: list[dict[str, Any]] = []
    if url:
        what = "Replying to" if mode == "reply" else "Quoting"
        shown = f"{what} <{safe_url(url)}>"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": shown}]})
    blocks += [
        {
            "type": "input",
            "block_id": "text",
            "label": _plain("Text"),
            "element": {
                "type": "plain_text_input",
                "action_id": "text",
                "multiline": True,
                "max_length": TEXT_LIMIT,
            },
        },
        {
            "type": "input",
            "block_id": "to",
            "optional": True,
            "label": _plain("Networks (comma separated; empty: this channel's)"),
            "element": {"type": "plain_text_input", "action_id": "to"},
        },
    ]
    meta = {"c": channel_id, "m": mode, "u": url}
    return {
        "type": "modal",
        "callback_id": COMPOSE_VIEW,
        "private_metadata": json.dumps(meta),
        "title": _plain("Post from Starling"),
        "submit": _plain("Preview"),
        "close": _plain("Cancel"),
        "blocks": blocks,
    }


def confirm_view(channel_id: str, args: str, preview_text: str) -> dict[str, Any]:
    """Step two: exactly what each network will receive, and a Post button."""
    text = escape_within(preview_text, 2900)
    return {
        "type": "modal",
        "callback_id": CONFIRM_VIEW,
        "private_metadata": json.dumps({"c": channel_id, "a": args}),
        "title": _plain("Post from Starling"),
        "submit": _plain("Post"),
        "close": _plain("Cancel"),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text, "verbatim": True}}],
    }


async def open_for_message(chat: SlackChat, identity: Identity, body: dict[str, Any]) -> None:
    mode = "reply" if body.get("callback_id") == REPLY_SHORTCUT else "quote"
    channel_id = str((body.get("channel") or {}).get("id") or "")
    url = relayed_link(body.get("message") or {}, identity)
    if not url:
        note = "Starling can only reply to or quote a post it relayed; this message is not one."
        await actions.answer(chat, _where(body, channel_id), note, True)
        return
    await open_composer(chat, body, channel_id, mode, url)


async def open_composer(
    chat: SlackChat, body: dict[str, Any], channel_id: str, mode: str = "", url: str = ""
) -> bool:
    """Open the modal for this trigger; False if Slack refused (the trigger expired)."""
    view = compose_view(channel_id, mode, url)
    try:
        await chat.api.call(
            "views.open", json={"trigger_id": str(body.get("trigger_id") or ""), "view": view}
        )
    except SlackFailure as failure:
        log.warning("could not open the Starling composer: %s", failure)
        return False
    return True


def _values(view: dict[str, Any]) -> dict[str, str]:
    state = (view.get("state") or {}).get("values") or {}
    return {
        block: str((state.get(block) or {}).get(block, {}).get("value") or "")
        for block in ("text", "to")
    }


def post_line(mode: str, url: str, to: str, text: str) -> str:
    """The `/post` arguments for the form's fields (`mode` "reply"/"quote" uses `url`)."""
    draft = Draft(
        text,
        reply_to=url if mode == "reply" else "",
        quote_of=url if mode == "quote" else "",
    )
    return format_post(PostRequest(to.split(","), draft))


async def preview(
    chat: SlackChat,
    commands: CommandService,
    identity: Identity,
    ack: AsyncAck,
    body: dict[str, Any],
) -> None:
    """The first submit: errors go back into the form; a preview replaces it."""
    view = body.get("view") or {}
    meta = _meta(view)
    values = _values(view)
    args = post_line(meta.get("m", ""), meta.get("u", ""), values["to"], values["text"])
    user = str((body.get("user") or {}).get("id") or "")
    ref = chat.channel_ref(identity.team_id, meta.get("c", ""))
    try:  # the answer to a view_submission must arrive within Slack's 3 s
        async with asyncio.timeout(PREVIEW_BUDGET_S):
            roles = await chat.user_groups.of(user)
            reply = await commands.handle(Invocation(ref, user, "post", "--preview " + args, roles))
    except TimeoutError:
        slow = "A network was slow to prepare the preview; press Preview again."
        await ack(response_action="errors", errors={"text": slow})
        return
    if reply.kind is not ReplyKind.PREVIEW:
        error = reply.text.removeprefix("/post: ")
        await ack(response_action="errors", errors={"text": error[:ERROR_LIMIT]})
        return
    await ack(response_action="update", view=confirm_view(meta.get("c", ""), args, reply.text))


async def confirm(
    chat: SlackChat, commands: CommandService, identity: Identity, body: dict[str, Any]
) -> None:
    """The second submit: post, and answer in the channel as `/post` does."""
    meta = _meta(body.get("view") or {})
    user = str((body.get("user") or {}).get("id") or "")
    channel_id = meta.get("c", "")
    ref = chat.channel_ref(identity.team_id, channel_id)
    roles = await chat.user_groups.of(user)
    reply = await commands.handle(Invocation(ref, user, "post", meta.get("a", ""), roles))
    prefix = chat.settings.command
    shown = reply_text(reply.text, prefix, commands.command_names())
    where = {"channel_id": channel_id, "user_id": user}
    await actions.answer(chat, where, shown, reply.ephemeral, reply.actions)


def _meta(view: dict[str, Any]) -> dict[str, str]:
    try:
        meta = json.loads(str(view.get("private_metadata") or "{}"))
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def _where(body: dict[str, Any], channel_id: str) -> dict[str, Any]:
    """Where to answer a shortcut: its response_url, else the member in the channel."""
    user = str((body.get("user") or {}).get("id") or "")
    return {"response_url": body.get("response_url"), "channel_id": channel_id, "user_id": user}
