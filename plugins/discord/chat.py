"""The Discord chat: relays posts as embeds and answers Starling's slash commands.

Exactly once across crashes: every message carries a token derived from the
delivery's idempotency key, as its nonce (Discord then refuses a second message
with the same nonce, `enforce_nonce`) and at the end of the embed footer
(`ref <token>`). `find_sent` scans the channel's recent history for a message by
Starling (the bot, or its webhook) carrying the token. A request that may have
reached Discord before failing marks its key, and the next `send` looks first.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import discord
import yarl
from discord.utils import MISSING

from bot.dispatch import chat_network
from bot.errors import ChatError, Outcome
from bot.model import ChannelRef, RichMessage
from bot.protocols import CommandService, HealthRecorder
from plugins.discord.buttons import edit_view, send_view
from plugins.discord.client import StarlingClient
from plugins.discord.embeds import (
    FooterMatch,
    build_embeds,
    key_token,
    thread_name,
    webhook_username,
)
from plugins.discord.errors import classify
from plugins.discord.interactions import PLATFORM, CommandBridge, build_commands
from plugins.discord.settings import DiscordSettings, invite_url
from plugins.discord.transport import RebasedWebhookAdapter, rebased

log = logging.getLogger(__name__)

NONE = discord.AllowedMentions.none()
WEBHOOK_NAME = "Starling"
FORUM_SCAN = 10  # most recently active forum posts looked at by find_sent
JUMP_URL = "https://discord.com/channels/{guild}/{channel}/{message}"
REPLY_LINE = "\u21aa Reply to {link}"  # a webhook cannot set `message_reference`
FIND_PAGES = 10  # history pages find_sent reads: `history_scan`, then up to 9 × 100 more
FIND_MAX_AGE_S = 172_800.0  # …and never further back than two days
BAD_TOKEN_CLOSE = 4004  # the gateway's "Authentication failed"
GONE_CODES = frozenset({10003, 10008})  # Unknown Channel, Unknown Message: deleted already

PlaceKind = Literal["text", "thread", "forum"]
HookParent = (
    discord.TextChannel | discord.ForumChannel | discord.VoiceChannel | discord.StageChannel
)


@dataclass(frozen=True, slots=True)
class Place:
    """Where a channel's messages go, and which channel owns the webhook for it."""

    channel_id: int
    kind: PlaceKind
    hook_parent: int
    guild_id: int | None
    channel: Any  # the fetched discord.py channel object


@dataclass(frozen=True, slots=True)
class SentRef:
    """A delivered message: where it lives (a thread for forum posts), and how to edit it."""

    channel_id: int
    message_id: int
    token: str
    webhook_id: int | None = None

    def encode(self) -> str:
        hook = f"/w{self.webhook_id}" if self.webhook_id else ""
        return f"{self.channel_id}/{self.message_id}/{self.token}{hook}"

    @classmethod
    def decode(cls, ref: str) -> SentRef:
        parts = ref.split("/")
        try:
            hook = int(parts[3][1:]) if len(parts) == 4 and parts[3].startswith("w") else None
            if len(parts) not in (3, 4) or (len(parts) == 4 and hook is None):
                raise ValueError(ref)
            return cls(int(parts[0]), int(parts[1]), parts[2], hook)
        except ValueError:
            raise ChatError(f"{ref!r} is not a Discord message reference", permanent=True) from None


class DiscordChat:
    """A `bot.protocols.Chat` for Discord, on the real discord.py client."""

    name = PLATFORM

    def __init__(self, settings: DiscordSettings, health: HealthRecorder) -> None:
        self.settings = settings
        self.min_interval_s = settings.min_interval_s
        # Discord's global limit is 50 requests/s per bot; the dispatcher keeps all
        # channels together under it, with room for command answers and lookups.
        self.max_rate_per_s = settings.max_rate_per_s
        self.invite = ""
        self._health = health
        self._bridge = CommandBridge(settings.member_permission())
        self._adapter = RebasedWebhookAdapter(settings.api_url)
        self.client = StarlingClient(
            api_url=settings.api_url,
            gateway_url=settings.gateway_url,
            health=health,
            network=chat_network(PLATFORM),
            setup=self._setup,
        )
        for command in build_commands(self._bridge):
            self.client.tree.add_command(command)
        self.client.component_handler = self._bridge.click
        self._login_lock = asyncio.Lock()
        self._logged_in = False
        self._closing = False
        self._places: dict[str, Place] = {}
        self._hooks: dict[int, discord.Webhook] = {}
        self._ambiguous: set[str] = set()

    # --- lifecycle --------------------------------------------------------------------

    async def run(self, commands: CommandService) -> None:
        """Log in, register the commands, then hold the gateway open until closed."""
        self._bridge.service = commands
        with rebased(self._adapter):
            try:
                await self._ensure_login()
                await self.client.connect(reconnect=True)
            except (discord.LoginFailure, discord.ConnectionClosed) as err:
                if isinstance(err, discord.ConnectionClosed) and err.code != BAD_TOKEN_CLOSE:
                    raise
                # Retrying cannot fix a token; say so once and let Starling carry on
                # (or stop, when Discord was its only chat).
                log.error(
                    "Discord rejected the bot token (401 Unauthorized); set a valid "
                    "[discord] token (STARLING_DISCORD__TOKEN). The Discord chat is off."
                )

    async def aclose(self) -> None:
        self._closing = True
        self._bridge.service = None
        with rebased(self._adapter):
            await self.client.close()

    async def _ensure_login(self) -> None:
        if self._logged_in and not self.client.is_closed():
            return
        async with self._login_lock:
            if self._logged_in and not self.client.is_closed():
                return
            if self._closing:
                raise ChatError("the Discord chat is shutting down")
            if self.client.is_closed():
                # The gateway gave up (discord.py closes the client); start afresh.
                self.client.clear()
                self._places.clear()
                self._hooks.clear()
            await self.client.login(self.settings.token.get_secret_value())
            self._logged_in = True

    async def _setup(self) -> None:
        app_id = self.client.application_id or 0
        self.invite = invite_url(app_id, use_webhooks=self.settings.use_webhooks)
        log.info("Invite Starling to a Discord server with: %s", self.invite)
        await self._sync_commands()

    async def _sync_commands(self) -> None:
        tree = self.client.tree
        scopes: list[discord.Object | None] = [discord.Object(g) for g in self.settings.guild_ids]
        scopes = scopes or [None]
        for guild in scopes:
            if guild is not None:
                tree.copy_global_to(guild=guild)
            where = f"Discord server {guild.id}" if guild else "all Discord servers"
            try:
                synced = await tree.sync(guild=guild)
            except discord.HTTPException as err:
                log.error(
                    "could not register Starling's commands in %s (%s %s); is the bot in that "
                    "server, invited with the applications.commands scope? Invite: %s",
                    where,
                    err.status,
                    err.text,
                    self.invite,
                )
                continue
            log.info("registered %d commands in %s", len(synced), where)

    # --- the Chat contract ------------------------------------------------------------

    async def send(self, channel: ChannelRef, message: RichMessage, key: str) -> str:
        token = key_token(key)
        async with self._calling(channel, key):
            place = await self._place(channel)
            if key in self._ambiguous:
                found = await self._find(place, token)
                if found is not None:
                    self._ambiguous.discard(key)
                    return found.encode()
            sent = await self._post(place, message, token)
        self._ambiguous.discard(key)
        return sent.encode()

    async def edit(self, channel: ChannelRef, message_ref: str, message: RichMessage) -> None:
        ref = SentRef.decode(message_ref)
        async with self._calling(channel, None):
            embeds = build_embeds(message, ref.token)
            poster = await self._poster(channel, ref)
            if poster is None:
                partial = self.client.get_partial_messageable(ref.channel_id)
                await partial.get_partial_message(ref.message_id).edit(
                    embeds=embeds, allowed_mentions=NONE, view=edit_view(message)
                )
                return
            hook, thread = poster
            await hook.edit_message(
                ref.message_id,
                embeds=embeds,
                allowed_mentions=NONE,
                thread=thread,
                view=edit_view(message),
            )

    async def delete(self, channel: ChannelRef, message_ref: str) -> None:
        """Remove a relayed message; one that is already gone counts as removed."""
        ref = SentRef.decode(message_ref)
        async with self._calling(channel, None):
            try:
                poster = await self._poster(channel, ref)
                if poster is None:
                    partial = self.client.get_partial_messageable(ref.channel_id)
                    await partial.get_partial_message(ref.message_id).delete()
                    return
                hook, thread = poster
                await hook.delete_message(ref.message_id, thread=thread)
            except discord.NotFound as err:
                if err.code not in GONE_CODES:
                    raise

    async def _poster(
        self, channel: ChannelRef, ref: SentRef
    ) -> tuple[discord.Webhook, discord.abc.Snowflake] | None:
        """The webhook that posted `ref` and its thread (MISSING in the channel itself),
        or None when the bot posted it; edits and deletes go through the same one."""
        if ref.webhook_id is None:
            return None
        place = await self._place(channel)
        hook = await self._webhook(place, create=False)
        if hook is None or hook.id != ref.webhook_id:
            raise ChatError("the webhook that posted this message is gone", permanent=True)
        in_thread = ref.channel_id != place.hook_parent
        return hook, discord.Object(ref.channel_id) if in_thread else MISSING

    async def find_sent(self, channel: ChannelRef, key: str) -> str | None:
        """Look for a message already carrying this key; None when unsure (it is resent)."""
        try:
            async with self._calling(channel, key):
                found = await self._find(await self._place(channel), key_token(key))
        except ChatError as err:
            log.warning("could not look for an earlier delivery in %s: %s", channel.native_id, err)
            self._ambiguous.add(key)
            return None
        return found.encode() if found else None

    # --- internals --------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _calling(self, channel: ChannelRef, key: str | None) -> AsyncIterator[None]:
        """Log in if needed, bound the time, and turn failures into `ChatError`."""
        where = f"#{channel.name} ({channel.native_id})" if channel.name else channel.native_id
        where = f"Discord channel {where}"
        with rebased(self._adapter):
            try:
                async with asyncio.timeout(self.settings.request_timeout_s):
                    await self._ensure_login()
                    yield
            except Exception as exc:
                if isinstance(exc, TimeoutError):
                    host = yarl.URL(self.settings.api_url).host or ""
                    self._health.record(chat_network(PLATFORM), host, Outcome.TIMEOUT)
                verdict = classify(exc, where, use_webhooks=self.settings.use_webhooks)
                if verdict.ambiguous and key is not None:
                    self._ambiguous.add(key)
                if verdict.error.permanent or verdict.webhook_gone:
                    self._forget(channel)
                if verdict.error is exc:
                    raise
                log.debug("Discord call for %s failed", where, exc_info=exc)
                raise verdict.error from exc

    def _forget(self, channel: ChannelRef) -> None:
        place = self._places.pop(channel.native_id, None)
        if place is not None:
            self._hooks.pop(place.hook_parent, None)

    async def _place(self, channel: ChannelRef) -> Place:
        cached = self._places.get(channel.native_id)
        if cached is not None:
            return cached
        if not channel.native_id.isdigit():
            raise ChatError(f"{channel.native_id!r} is not a Discord channel id", permanent=True)
        fetched = await self.client.fetch_channel(int(channel.native_id))
        guild_id = getattr(fetched, "guild_id", None) or getattr(
            getattr(fetched, "guild", None), "id", None
        )
        kind: PlaceKind
        if isinstance(fetched, discord.ForumChannel):
            kind, parent = "forum", fetched.id
        elif isinstance(fetched, discord.Thread):
            kind, parent = "thread", fetched.parent_id
        elif isinstance(fetched, HookParent):
            kind, parent = "text", fetched.id
        else:
            raise ChatError(
                f"Discord channel {channel.native_id} is a {getattr(fetched, 'type', 'DM')}; "
                "Starling posts in text channels, threads and forums",
                permanent=True,
            )
        place = Place(fetched.id, kind, parent, guild_id, fetched)
        self._places[channel.native_id] = place
        return place

    async def _post(self, place: Place, message: RichMessage, token: str) -> SentRef:
        embeds = build_embeds(message, token)
        # A reply whose parent was relayed here answers it; a parent that lives in a
        # thread (a forum post, say) takes the reply into that thread.
        parent = _parent(message.thread_ref)
        in_thread = parent.channel_id if parent and parent.channel_id != place.channel_id else 0
        if self.settings.use_webhooks:
            hook = await self._webhook(place, create=True)
            assert hook is not None
            sent = await hook.send(
                content=_reply_line(parent, place.guild_id) or MISSING,
                embeds=embeds,
                username=webhook_username(message.author) or MISSING,
                avatar_url=message.avatar_url or MISSING,
                allowed_mentions=NONE,
                wait=True,
                thread=discord.Object(in_thread or place.channel_id)
                if in_thread or place.kind == "thread"
                else MISSING,
                thread_name=thread_name(message)
                if place.kind == "forum" and not in_thread
                else MISSING,
                view=send_view(message),
            )
            return SentRef(sent.channel.id, sent.id, token, hook.id)
        if place.kind == "forum" and not in_thread:
            created = await place.channel.create_thread(
                name=thread_name(message),
                embeds=embeds,
                allowed_mentions=NONE,
                view=send_view(message),
            )
            return SentRef(created.thread.id, created.message.id, token)
        partial = self.client.get_partial_messageable(in_thread or place.channel_id)
        reply: dict[str, Any] = {"reference": _reply_to(parent)} if parent else {}
        posted = await partial.send(
            embeds=embeds, nonce=token, allowed_mentions=NONE, view=send_view(message), **reply
        )
        return SentRef(in_thread or place.channel_id, posted.id, token)

    async def _webhook(self, place: Place, *, create: bool) -> discord.Webhook | None:
        """Starling's own webhook on the channel (a thread's parent), made on first use."""
        cached = self._hooks.get(place.hook_parent)
        if cached is not None:
            return cached
        parent = place.channel
        if place.kind == "thread":
            parent = await self.client.fetch_channel(place.hook_parent)
        if not isinstance(parent, HookParent):
            raise ChatError(
                f"Discord channel {place.hook_parent} cannot hold webhooks", permanent=True
            )
        me = self.client.user
        mine = [
            hook
            for hook in await parent.webhooks()
            if hook.token and hook.user is not None and me is not None and hook.user.id == me.id
        ]
        hook = mine[0] if mine else None
        if hook is None and create:
            hook = await parent.create_webhook(
                name=WEBHOOK_NAME, reason="Starling relays posts under their authors' names"
            )
        if hook is not None:
            self._hooks[place.hook_parent] = hook
        return hook

    async def _find(self, place: Place, token: str) -> SentRef | None:
        me = self.client.user
        my_id = str(me.id) if me is not None else ""
        hook_ids: set[str] = set()
        if self.settings.use_webhooks:
            with contextlib.suppress(discord.HTTPException):
                hook = await self._webhook(place, create=False)
                if hook is not None:
                    hook_ids.add(str(hook.id))
        match = FooterMatch(token)

        def ours(raw: Mapping[str, Any]) -> bool:
            author = raw.get("author") or {}
            return author.get("id") == my_id or str(raw.get("webhook_id", "")) in hook_ids

        def ref(raw: Mapping[str, Any]) -> SentRef:
            hook = raw.get("webhook_id")
            return SentRef(
                int(raw["channel_id"]), int(raw["id"]), token, int(hook) if hook else None
            )

        http = self.client.http
        if place.kind == "forum" and place.guild_id is not None:
            # A new post starts a thread; a reply goes into its parent's, maybe an older
            # one: so the posts with the latest messages, each read from its newest.
            active = await http.get_active_threads(place.guild_id)
            posts = [t for t in active["threads"] if t.get("parent_id") == str(place.channel_id)]
            posts.sort(key=lambda t: int(t.get("last_message_id") or t["id"]), reverse=True)
            size = self.settings.history_scan
            for post in posts[:FORUM_SCAN]:
                post_id = int(post["id"])
                try:
                    page = await http.logs_from(post_id, size)
                    if len(page) >= size and all(int(m["id"]) != post_id for m in page):
                        page.append(await http.get_message(post_id, post_id))  # the starter
                except discord.NotFound:
                    continue
                for raw in page:
                    if ours(raw) and match.found_in(raw):
                        return ref(raw)
            return None
        # A busy channel may have moved on by more than one page since the crash: page
        # back, bounded by FIND_PAGES and FIND_MAX_AGE_S (message ids carry their time).
        oldest = discord.utils.time_snowflake(
            discord.utils.utcnow() - datetime.timedelta(seconds=FIND_MAX_AGE_S)
        )
        size, before = self.settings.history_scan, None
        for _ in range(FIND_PAGES):
            page = await http.logs_from(place.channel_id, size, before=before)
            for raw in page:
                if ours(raw) and match.found_in(raw):
                    return ref(raw)
            if len(page) < size or int(page[-1]["id"]) < oldest:
                return None
            size, before = 100, int(page[-1]["id"])
        return None


def _parent(thread_ref: str) -> SentRef | None:
    """The relayed parent a reply answers; None when there is none (or its ref is not
    one of ours: the reply then goes out on its own rather than not at all)."""
    if not thread_ref:
        return None
    try:
        return SentRef.decode(thread_ref)
    except ChatError:
        return None


def _reply_line(parent: SentRef | None, guild_id: int | None) -> str:
    """What stands for a reply in a webhook message: a link to the parent, which
    Discord shows as a jump chip (a webhook cannot send a real reply)."""
    if parent is None or guild_id is None:
        return ""
    link = JUMP_URL.format(guild=guild_id, channel=parent.channel_id, message=parent.message_id)
    return REPLY_LINE.format(link=link)


def _reply_to(parent: SentRef) -> discord.MessageReference:
    return discord.MessageReference(
        message_id=parent.message_id, channel_id=parent.channel_id, fail_if_not_exists=False
    )
