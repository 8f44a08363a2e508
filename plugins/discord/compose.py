"""The Discord composer: message context menus and a modal that previews before posting.

"Post a reply from Starling" and "Quote on…" (message context menus on a relayed
post) and `/post` without text open a modal. Its submit shows, to the member only,
what each network will receive (the core's `/post --preview`, so every check runs
on the server) with a Post button; the click posts exactly as `/post` would.

Not imported with `from __future__ import annotations`: discord.py reads the
context menu callbacks' annotations at runtime.
"""

import secrets
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import discord

from bot.model import Action
from bot.postback import PostRequest, format_post
from bot.protocols import Draft, DraftImage, Reply, ReplyKind

if TYPE_CHECKING:
    from plugins.discord.interactions import CommandBridge

REPLY_MENU = "Post a reply from Starling"
QUOTE_MENU = "Quote on…"
TITLE = "Post from Starling"
TEXT_LIMIT = 4000  # Discord: a text input holds at most 4,000 characters
DRAFT_TTL_S = 900.0  # a preview's Post button works this long (kept in memory only)
NOT_RELAYED = "Starling can only reply to or quote a post it relayed; this message is not one."
EXPIRED = "This preview has expired (or Starling restarted); open the composer again."


def post_args(
    text: str,
    *,
    to: str | None = None,
    reply: str | None = None,
    quote: str | None = None,
    cw: str | None = None,
    thread: bool = False,
    image: str | None = None,
    alt: str | None = None,
) -> str:
    """The `/post` line for the command's or the modal's fields. An attached image is
    passed as its link, which the core downloads itself."""
    images = (DraftImage(image, alt or ""),) if image and image.strip() else ()
    draft = Draft(text, reply or "", quote or "", cw or "", images)
    return format_post(PostRequest((to or "").split(","), draft, thread))


def relayed_link(message: discord.Message, client: discord.Client) -> str:
    """The post a message of Starling's relayed (its embed's link), or ""."""
    me = client.user
    ours = (me is not None and message.author.id == me.id) or (
        message.webhook_id is not None and message.application_id == client.application_id
    )
    if not ours or not message.embeds:
        return ""
    return str(message.embeds[0].url or "")


class ComposeModal(discord.ui.Modal):
    """The text and, optionally, the networks; submitting shows the preview."""

    def __init__(self, bridge: "CommandBridge", mode: str, url: str) -> None:
        super().__init__(title=TITLE, timeout=DRAFT_TTL_S)
        self.bridge, self.mode, self.url = bridge, mode, url
        what = {"reply": "Your reply", "quote": "Your quote"}.get(mode, "Text")
        self.text: discord.ui.TextInput[ComposeModal] = discord.ui.TextInput(
            label=what, style=discord.TextStyle.paragraph, max_length=TEXT_LIMIT
        )
        self.to: discord.ui.TextInput[ComposeModal] = discord.ui.TextInput(
            label="Networks (comma separated, optional)", required=False, max_length=200
        )
        self.add_item(self.text)
        self.add_item(self.to)

    async def on_submit(self, interaction: discord.Interaction[discord.Client]) -> None:
        args = post_args(
            self.text.value,
            to=self.to.value,
            reply=self.url if self.mode == "reply" else None,
            quote=self.url if self.mode == "quote" else None,
        )
        await preview(self.bridge, interaction, args)


async def open_composer(
    bridge: "CommandBridge",
    interaction: discord.Interaction[discord.Client],
    mode: str = "",
    message: discord.Message | None = None,
) -> None:
    url = ""
    if message is not None:
        url = relayed_link(message, interaction.client)
        if not url:
            await interaction.response.send_message(NOT_RELAYED, ephemeral=True)
            return
    await interaction.response.send_modal(ComposeModal(bridge, mode, url))


def member(interaction: discord.Interaction[discord.Client]) -> str:
    """How the core names a Discord member (the same for commands and clicks)."""
    return f"{interaction.user.name} ({interaction.user.id})"


def member_roles(interaction: discord.Interaction[discord.Client]) -> frozenset[str]:
    """The member's role ids, for `role:<id>` approval entries. `Member.roles` keeps only
    roles in the guild cache, so the ids the interaction itself carried count too."""
    user = interaction.user
    if not isinstance(user, discord.Member):
        return frozenset()  # a DM: no roles
    cached = {str(role.id) for role in user.roles if not role.is_default()}
    carried = {str(r) for r in getattr(user, "_roles", ())}  # the payload's member.roles
    return frozenset(cached | carried)


async def preview(
    bridge: "CommandBridge", interaction: discord.Interaction[discord.Client], args: str
) -> None:
    """Ask the core what each network would receive; show it with a Post button."""
    who = member(interaction)

    def with_post_button(reply: Reply) -> Reply:
        if reply.kind is not ReplyKind.PREVIEW:
            return reply  # what was wrong, without a button
        bridge.forget_old_drafts()
        nonce = secrets.token_hex(8)
        bridge.drafts[nonce] = (time.monotonic(), who, args)
        return replace(reply, actions=(Action("Post", "confirm", nonce, "primary"),))

    await bridge.run(interaction, "post", "--preview " + args, private=True, then=with_post_button)


def take_draft(
    bridge: "CommandBridge", interaction: discord.Interaction[discord.Client], nonce: str
) -> Reply | str:
    """The `/post` line behind a preview's Post button, or why it cannot be posted."""
    draft = bridge.drafts.pop(nonce, None)
    if draft is None or time.monotonic() - draft[0] > DRAFT_TTL_S:
        return Reply(EXPIRED)
    if draft[1] != member(interaction):
        return Reply("Only the member who wrote this post can send it.")
    return draft[2]


def context_menus(bridge: "CommandBridge") -> list[discord.app_commands.ContextMenu]:
    """The two message context menus."""

    async def reply_to(
        interaction: discord.Interaction[discord.Client], message: discord.Message
    ) -> None:
        await open_composer(bridge, interaction, "reply", message)

    async def quote(
        interaction: discord.Interaction[discord.Client], message: discord.Message
    ) -> None:
        await open_composer(bridge, interaction, "quote", message)

    menus = [
        discord.app_commands.ContextMenu(name=REPLY_MENU, callback=reply_to),
        discord.app_commands.ContextMenu(name=QUOTE_MENU, callback=quote),
    ]
    for menu in menus:
        menu.guild_only = True
        menu.allowed_contexts = discord.app_commands.AppCommandContext(guild=True)
    return menus
