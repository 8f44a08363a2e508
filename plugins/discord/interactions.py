"""Starling's slash commands as Discord application commands.

Each command builds the same text a console user would type and hands it to the
core's `CommandService`, so parsing and validation live in one place. Discord
wants an answer to an interaction within 3 s: a command that takes longer (a slow
feed on /follow) is deferred first and answered when the core is done.

Not imported with `from __future__ import annotations`: discord.py reads the
callbacks' annotations at runtime to build the command options.
"""

import asyncio
import dataclasses
import logging
import shlex
import time
from collections.abc import Callable
from typing import Any

import discord
from discord import app_commands
from discord.utils import MISSING

from bot.model import ChannelRef
from bot.protocols import CommandService, Invocation, Reply, ReplyKind
from plugins.discord import compose
from plugins.discord.buttons import CLICKABLE, build_view, parse_custom_id
from plugins.discord.embeds import reply_chunks

log = logging.getLogger(__name__)

PLATFORM = "discord"
# Answer or defer well inside Discord's 3 s window, leaving room for the round trip.
DEFER_AFTER_S = 1.5
AUTOCOMPLETE_BUDGET_S = 2.0
CHOICE_LIMIT = 25
CHOICE_TEXT_LIMIT = 100
NONE = discord.AllowedMentions.none()

ChannelOption = app_commands.AppCommandChannel | app_commands.AppCommandThread


class PostChannel(app_commands.Transformer[discord.Client]):
    """A `channel` option offering only places Starling can post in."""

    @property
    def type(self) -> discord.AppCommandOptionType:
        return discord.AppCommandOptionType.channel

    @property
    def channel_types(self) -> list[discord.ChannelType]:
        kinds = discord.ChannelType
        return [
            kinds.text,
            kinds.news,
            kinds.forum,
            kinds.media,
            kinds.public_thread,
            kinds.private_thread,
            kinds.news_thread,
        ]

    async def transform(self, interaction: discord.Interaction[discord.Client], value: Any) -> Any:
        return value


Target = app_commands.Transform[ChannelOption, PostChannel]


def follow_args(
    network: str,
    target: str,
    *,
    include: str | None = None,
    exclude: str | None = None,
    regex: str | None = None,
    no_replies: bool = False,
    no_reposts: bool = False,
    last: int | None = None,
    every: str | None = None,
    options: str | None = None,
) -> str:
    """The argument line the core's parser reads, each value quoted as one word."""
    words = [shlex.quote(network.strip()), shlex.quote(target.strip())]
    for flag, value in (("include", include), ("exclude", exclude), ("regex", regex)):
        if value:
            words += [f"--{flag}", shlex.quote(value)]
    if no_replies:
        words.append("--no-replies")
    if no_reposts:
        words.append("--no-reposts")
    if last is not None:
        words += ["--last", str(last)]
    if every:
        words += ["--every", shlex.quote(every.strip())]
    if options:
        words.append(options.strip())
    return " ".join(words)


class CommandBridge:
    """Runs Discord interactions through the core's command service."""

    def __init__(self, manage: discord.Permissions) -> None:
        self.manage = manage
        self.service: CommandService | None = None
        # Composer previews waiting for their Post click: nonce → (when, member, /post line).
        self.drafts: dict[str, tuple[float, str, str]] = {}

    def forget_old_drafts(self) -> None:
        cutoff = time.monotonic() - compose.DRAFT_TTL_S
        for nonce in [n for n, (at, _, _) in self.drafts.items() if at < cutoff]:
            del self.drafts[nonce]

    def channel_ref(
        self, interaction: discord.Interaction[discord.Client], target: ChannelOption | None
    ) -> ChannelRef:
        if target is not None:
            return ChannelRef(PLATFORM, str(target.id), target.name)
        channel = interaction.channel
        name = getattr(channel, "name", "") or ""
        return ChannelRef(PLATFORM, str(interaction.channel_id), name)

    def _missing_permission(self, target: ChannelOption | None) -> str:
        """Why the member may not manage `target`, or "" (Discord checked the current one)."""
        if target is None:
            return ""
        if target.permissions.is_superset(self.manage):
            return ""
        wanted = ", ".join(name.replace("_", " ").title() for name, on in self.manage if on)
        return f"you need {wanted} in #{target.name} to change what is posted there"

    async def run(
        self,
        interaction: discord.Interaction[discord.Client],
        command: str,
        args: str,
        target: ChannelOption | None = None,
        *,
        managing: bool = False,
        private: bool = False,
        then: Callable[[Reply], Reply] | None = None,
    ) -> Reply | None:
        """Answer within Discord's window: directly if the core is quick, else defer first.

        `private` answers only the member, whatever the core says (button clicks);
        `then` adapts the core's answer before it is shown (a preview's Post button)."""
        started = time.monotonic()
        if self.service is None:
            await self._send(interaction, Reply("Starling is still starting; try again shortly."))
            return None
        refusal = self._missing_permission(target) if managing else ""
        if refusal:
            await self._send(interaction, Reply(f"/{command}: {refusal}"))
            return None
        user = interaction.user
        invocation = Invocation(
            self.channel_ref(interaction, target),
            f"{user.name} ({user.id})",
            command,
            args,
            compose.member_roles(interaction),
        )
        task = asyncio.ensure_future(self.service.handle(invocation))
        done, _ = await asyncio.wait({task}, timeout=DEFER_AFTER_S)
        if not done:
            await interaction.response.defer(ephemeral=True, thinking=True)
            log.debug("/%s deferred after %.1f s", command, time.monotonic() - started)
        reply = await task
        shown = then(reply) if then is not None else reply
        shown = _private(shown) if private else shown
        await (self._send(interaction, shown) if done else self._send_late(interaction, shown))
        return reply

    async def click(self, interaction: discord.Interaction[discord.Client]) -> None:
        """A click on one of Starling's buttons: the same command, answered to the clicker only.

        The message the button sits on shows the outcome to everyone (the core edits it).
        """
        data: Any = interaction.data or {}
        parsed = parse_custom_id(str(data.get("custom_id") or ""))
        if parsed is None or interaction.type is not discord.InteractionType.component:
            return  # not one of ours
        command, args = parsed
        if command == "confirm":  # a composer preview's Post button
            line = compose.take_draft(self, interaction, args)
            if isinstance(line, Reply):
                await self._send(interaction, line)
            else:
                await self.run(interaction, "post", line)
            return
        if command not in CLICKABLE:
            await self._send(interaction, Reply("This button does nothing any more."))
            return
        reply = await self.run(interaction, command, args, private=True)
        clicked = interaction.message
        if (
            command == "undo"
            and reply is not None
            and reply.kind is ReplyKind.UNDONE
            and clicked is not None
            and not clicked.embeds  # a post's answer; the core edits a request message itself
        ):
            try:  # the post is gone: its Delete button goes too
                await clicked.edit(view=None, allowed_mentions=NONE)
            except discord.HTTPException as err:
                log.warning("could not remove the Delete button: %s", err)

    async def _send(self, interaction: discord.Interaction[discord.Client], reply: Reply) -> None:
        chunks = reply_chunks(reply.text)
        view = build_view(reply.actions)
        extra: dict[str, Any] = {"view": view} if view is not None and len(chunks) == 1 else {}
        await interaction.response.send_message(
            chunks[0], ephemeral=reply.ephemeral, allowed_mentions=NONE, **extra
        )
        for index, chunk in enumerate(chunks[1:], 2):
            await interaction.followup.send(
                chunk,
                ephemeral=reply.ephemeral,
                allowed_mentions=NONE,
                view=view if view is not None and index == len(chunks) else MISSING,  # the last
            )

    async def _send_late(
        self, interaction: discord.Interaction[discord.Client], reply: Reply
    ) -> None:
        """After a defer: the "thinking…" message was private; a public answer replaces it."""
        chunks = reply_chunks(reply.text)
        view = build_view(reply.actions)
        if reply.ephemeral and len(chunks) == 1 and view is not None:
            await interaction.edit_original_response(
                content=chunks[0], allowed_mentions=NONE, view=view
            )
            return
        if reply.ephemeral:
            await interaction.edit_original_response(content=chunks[0], allowed_mentions=NONE)
            rest = chunks[1:]
        else:
            await interaction.delete_original_response()
            rest = chunks
        for index, chunk in enumerate(rest, 1):
            await interaction.followup.send(
                chunk,
                ephemeral=reply.ephemeral,
                allowed_mentions=NONE,
                view=view if view is not None and index == len(rest) else MISSING,  # the last
            )

    async def suggest(
        self, interaction: discord.Interaction[discord.Client], field: str, current: str
    ) -> list[app_commands.Choice[str]]:
        """Autocomplete from the core; an empty list rather than a late answer."""
        if self.service is None:
            return []
        target = getattr(interaction.namespace, "channel", None)
        channel = self.channel_ref(
            interaction, target if isinstance(target, ChannelOption) else None
        )
        try:
            async with asyncio.timeout(AUTOCOMPLETE_BUDGET_S):
                choices = await self.service.complete(channel, field, current)
        except TimeoutError:
            log.warning("autocomplete for %s took longer than %.1f s", field, AUTOCOMPLETE_BUDGET_S)
            return []
        return [
            app_commands.Choice(
                name=choice.label[:CHOICE_TEXT_LIMIT] or choice.value[:CHOICE_TEXT_LIMIT],
                value=choice.value[:CHOICE_TEXT_LIMIT],
            )
            for choice in choices[:CHOICE_LIMIT]
            if choice.value
        ]


def postback_commands(bridge: CommandBridge) -> list[app_commands.Command[Any, ..., None]]:
    """/post, /approve, /reject, /undo and /accounts: the core decides who may do what."""

    @app_commands.command(name="post", description="Post to the team's accounts")
    @app_commands.describe(
        text="What to post (leave empty to open the composer with a preview)",
        to="Networks, comma separated (default: this channel's)",
        reply="Link of the post to reply to",
        quote="Link of the post to quote",
        cw="Content warning (Mastodon)",
        thread="Split a text too long for a network into a thread there",
        image="A picture to post with the text (JPEG, PNG, GIF or WebP, up to 1 MB)",
        alt="What the picture shows, for people who cannot see it",
    )
    async def post(
        interaction: discord.Interaction[discord.Client],
        text: str | None = None,
        to: str | None = None,
        reply: str | None = None,
        quote: str | None = None,
        cw: str | None = None,
        thread: bool = False,
        image: discord.Attachment | None = None,
        alt: str | None = None,
    ) -> None:
        if not (text and text.strip()):  # `/post` alone opens the composer
            await compose.open_composer(bridge, interaction)
            return
        args = compose.post_args(
            text,
            to=to,
            reply=reply,
            quote=quote,
            cw=cw,
            thread=thread,
            image=image.url if image is not None else None,
            alt=alt,
        )
        await bridge.run(interaction, "post", args)

    @app_commands.command(name="approve", description="Approve a post request")
    @app_commands.describe(request="The request number")
    async def approve(
        interaction: discord.Interaction[discord.Client], request: app_commands.Range[int, 1]
    ) -> None:
        await bridge.run(interaction, "approve", str(request))

    @app_commands.command(name="reject", description="Reject a post request")
    @app_commands.describe(request="The request number")
    async def reject(
        interaction: discord.Interaction[discord.Client], request: app_commands.Range[int, 1]
    ) -> None:
        await bridge.run(interaction, "reject", str(request))

    @app_commands.command(name="undo", description="Remove your last post from every network")
    @app_commands.describe(post="The post number (default: your last post)")
    async def undo(
        interaction: discord.Interaction[discord.Client],
        post: app_commands.Range[int, 1] | None = None,
    ) -> None:
        await bridge.run(interaction, "undo", str(post) if post is not None else "")

    @app_commands.command(name="accounts", description="The accounts Starling can post to")
    async def accounts(interaction: discord.Interaction[discord.Client]) -> None:
        await bridge.run(interaction, "accounts", "")

    return [post, approve, reject, undo, accounts]


def _private(reply: Reply) -> Reply:
    """The same answer, for the member who asked only."""
    return dataclasses.replace(reply, ephemeral=True)


def build_commands(
    bridge: CommandBridge,
) -> list[app_commands.Command[Any, ..., None] | app_commands.ContextMenu]:
    """/follow, /search, /unfollow (members who may manage) and /list, /status, /help (all)."""

    async def networks(
        interaction: discord.Interaction[discord.Client], current: str
    ) -> list[app_commands.Choice[str]]:
        return await bridge.suggest(interaction, "network", current)

    async def subscriptions(
        interaction: discord.Interaction[discord.Client], current: str
    ) -> list[app_commands.Choice[str]]:
        return await bridge.suggest(interaction, "subscription", current)

    described = app_commands.describe(
        network="Which network, e.g. feeds",
        target="The account, feed URL or search words",
        include="Only posts containing one of these words (comma separated)",
        exclude="Drop posts containing any of these words (comma separated)",
        regex="Only posts whose title or text match this pattern",
        no_replies="Skip replies",
        no_reposts="Skip reposts",
        last="Also post the newest N posts right now",
        every="How often to check, e.g. 90s, 10m or 2h",
        options="More options as you would type them, e.g. --include python",
        channel="Post into this channel, thread or forum instead of here",
    )

    def subscribing(verb: str, description: str) -> app_commands.Command[Any, ..., None]:
        """/follow and /search: the same options, a different command for the core."""

        @app_commands.command(name=verb, description=description)
        @described
        @app_commands.autocomplete(network=networks)
        async def command(
            interaction: discord.Interaction[discord.Client],
            network: str,
            target: str,
            include: str | None = None,
            exclude: str | None = None,
            regex: str | None = None,
            no_replies: bool = False,
            no_reposts: bool = False,
            last: app_commands.Range[int, 0, 200] | None = None,
            every: str | None = None,
            options: str | None = None,
            channel: Target | None = None,
        ) -> None:
            args = follow_args(
                network, target, include=include, exclude=exclude, regex=regex,
                no_replies=no_replies, no_reposts=no_reposts, last=last, every=every,
                options=options,
            )  # fmt: skip
            await bridge.run(interaction, verb, args, channel, managing=True)

        return command

    follow = subscribing("follow", "Relay an account or feed into this channel")
    search = subscribing("search", "Relay posts that match a search")

    @app_commands.command(name="unfollow", description="Stop a subscription (ids are in /list)")
    @app_commands.describe(id="The subscription to stop", channel="The channel it posts into")
    @app_commands.autocomplete(id=subscriptions)
    async def unfollow(
        interaction: discord.Interaction[discord.Client],
        id: str,
        channel: Target | None = None,
    ) -> None:
        await bridge.run(interaction, "unfollow", id.strip(), channel, managing=True)

    @app_commands.command(name="list", description="The subscriptions in this channel")
    @app_commands.describe(channel="Show another channel's subscriptions")
    async def list_(
        interaction: discord.Interaction[discord.Client], channel: Target | None = None
    ) -> None:
        await bridge.run(interaction, "list", "", channel)

    @app_commands.command(name="status", description="How each network is doing")
    async def status(interaction: discord.Interaction[discord.Client]) -> None:
        await bridge.run(interaction, "status", "")

    @app_commands.command(name="help", description="Starling's commands and networks")
    async def help_(interaction: discord.Interaction[discord.Client]) -> None:
        await bridge.run(interaction, "help", "")

    commands: list[app_commands.Command[Any, ..., None]] = [
        follow, search, unfollow, list_, status, help_, *postback_commands(bridge)
    ]  # fmt: skip
    for command in commands:
        command.guild_only = True
        command.allowed_contexts = app_commands.AppCommandContext(guild=True)
    for command in (follow, search, unfollow):
        command.default_permissions = bridge.manage
    return [*commands, *compose.context_menus(bridge)]
