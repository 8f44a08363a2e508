"""The Slack chat: relayed posts out as Block Kit, exactly once, commands in through Bolt.

Exactly once: every message carries its idempotency key in Slack message
metadata (`starling_delivery`), and `find_sent` reads it back from the channel
history and, as history does not list thread replies, from the threads under
Starling's own messages that had replies in the same window. A send whose
outcome is unknown (a timeout, a dropped connection, a 5xx) leaves its key
"uncertain", so the next attempt looks in the history before it posts again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from bot.clock import Clock
from bot.errors import ChatError, Outcome
from bot.model import ChannelRef, RichMessage
from bot.protocols import CommandService, HealthRecorder
from plugins.slack.api import SlackApi, SlackFailure
from plugins.slack.config import SlackSettings
from plugins.slack.format import render_blocks, render_fallback
from plugins.slack.receive import receive
from plugins.slack.usergroups import UserGroups

log = logging.getLogger(__name__)

PLATFORM = "slack"
EVENT_TYPE = "starling_delivery"
HISTORY_PAGE = 200
LOOKUP_RATE_LIMIT_TRIES = 3
LOOKUP_MAX_WAIT_S = 30.0
# A failed history lookup in these cases proves nothing was posted (or cannot be checked).
_LOOKUP_GIVES_UP = frozenset({"channel_not_found", "is_archived", "not_in_channel"})
_GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})
THREAD_MARK = "@"  # a reply's message ref: "<ts>@<thread ts>"
THREAD_SCAN = 20  # the most threads (newest reply first) one lookup reads


class _GiveUp(Exception):
    """The lookup cannot run here (no channel, not a member): nothing to find."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who Starling is in the workspace, from `auth.test`."""

    team_id: str
    team: str
    user_id: str
    user: str
    bot_id: str
    enterprise_id: str | None = None


class SlackChat:
    """Satisfies `bot.protocols.Chat` for one Slack workspace (single-workspace token)."""

    def __init__(
        self,
        settings: SlackSettings,
        health: HealthRecorder,
        clock: Clock,
        *,
        name: str = PLATFORM,
    ) -> None:
        self.name = name
        self.settings = settings
        self.min_interval_s = settings.min_interval_s
        self.api = SlackApi(
            settings.bot_token.get_secret_value(), settings.api_url, settings.timeout_s, health
        )
        self._clock = clock
        self._uncertain: set[str] = set()
        self.user_groups = UserGroups(self.api, clock)  # for `group:` approval entries
        self.identity: Identity | None = None
        self.connected = asyncio.Event()
        self._stop = asyncio.Event()
        self.http_port: int | None = None  # the bound port in HTTP mode, once listening

    # --- channels ---------------------------------------------------------------

    def channel_ref(self, team_id: str, channel_id: str, name: str = "") -> ChannelRef:
        """How Starling stores a Slack channel: `<team_id>/<channel_id>`."""
        return ChannelRef(self.name, f"{team_id}/{channel_id}", f"#{name}" if name else "")

    def _channel_id(self, channel: ChannelRef) -> str:
        team, _, channel_id = channel.native_id.rpartition("/")
        if not channel_id:
            raise ChatError(f"{channel.native_id!r} is not a Slack channel id", permanent=True)
        if team and self.identity is not None and team != self.identity.team_id:
            raise ChatError(
                f"this channel is in Slack workspace {team}, but the bot token is for "
                f"{self.identity.team_id}",
                permanent=True,
            )
        return channel_id

    # --- sending ----------------------------------------------------------------

    async def send(self, channel: ChannelRef, message: RichMessage, key: str) -> str:
        channel_id = self._channel_id(channel)
        root = thread_root(message.thread_ref)
        if key in self._uncertain:
            found = await self._lookup(channel_id, key, thread=root)
            if found is not None:
                self._uncertain.discard(key)
                return found
        metadata = {"event_type": EVENT_TYPE, "event_payload": {"key": key}}
        base: dict[str, Any] = {"channel": channel_id, "metadata": metadata}
        if root:
            base["thread_ts"] = root  # a reply goes into its relayed parent's thread
        body = await self._post_with_fallbacks("chat.postMessage", base, message, key)
        self._uncertain.discard(key)
        ts = str(body.get("ts") or "")
        return f"{ts}{THREAD_MARK}{root}" if root and ts else ts

    async def edit(self, channel: ChannelRef, message_ref: str, message: RichMessage) -> None:
        channel_id = self._channel_id(channel)
        await self._post_with_fallbacks(
            "chat.update", {"channel": channel_id, "ts": message_ts(message_ref)}, message, None
        )

    async def delete(self, channel: ChannelRef, message_ref: str) -> None:
        """Remove a relayed message; one that is already gone counts as removed."""
        channel_id = self._channel_id(channel)
        ts = message_ts(message_ref)
        try:
            await self.api.call("chat.delete", json={"channel": channel_id, "ts": ts})
        except SlackFailure as failure:
            if failure.error == "message_not_found":
                return
            raise _chat_error(failure) from None

    async def _post_with_fallbacks(
        self, method: str, base: dict[str, Any], message: RichMessage, key: str | None
    ) -> dict[str, Any]:
        """Post the full card; if Slack refuses the blocks (an image it cannot fetch,
        usually), post it without images, then as text alone, so one bad picture
        never blocks a channel."""
        text = render_fallback(message)
        attempts: list[list[dict[str, Any]] | None] = []
        for with_images in (True, False):
            card = render_blocks(message, with_images=with_images)
            if card not in attempts:
                attempts.append(card)
        attempts.append(None)
        for blocks in attempts:
            body = dict(base, text=text, unfurl_links=False, unfurl_media=False, parse="none")
            body["link_names"] = False
            if blocks is not None:
                body["blocks"] = blocks
            elif method == "chat.update":
                body["blocks"] = []  # drop the old card, or it stays beside the new text
            try:
                return await self.api.call(method, json=body)
            except SlackFailure as failure:
                if failure.error == "invalid_blocks" and blocks is not None:
                    log.warning("Slack refused the blocks of a message; posting it simpler")
                    continue
                if failure.uncertain and key is not None:
                    self._uncertain.add(key)
                if method == "chat.update" and failure.error in _GONE:
                    raise ChatError(
                        f"the Slack message cannot be edited any more ({failure.error})",
                        permanent=True,
                    ) from None
                raise _chat_error(failure) from None
        raise ChatError("Slack refused the message in every form")  # pragma: no cover

    # --- idempotency --------------------------------------------------------------

    async def find_sent(self, channel: ChannelRef, key: str) -> str | None:
        """The `ts` of the message sent with `key`, from recent channel history."""
        channel_id = self._channel_id(channel)
        try:
            found = await self._lookup(channel_id, key)
        except ChatError as err:
            # Unknown for now: say "not found", but check again before the resend posts.
            log.warning("could not check Slack history for a sent message: %s", err)
            self._uncertain.add(key)
            return None
        self._uncertain.discard(key)
        return found

    async def _lookup(self, channel_id: str, key: str, *, thread: str = "") -> str | None:
        """The message ref sent with `key`: in `thread` when it was meant for one, in the
        channel history, then in the threads under Starling's messages with recent
        replies (a reply's ref, `<ts>@<thread ts>`, as `send` returns it)."""
        # Slack's timestamps are its own wall clock, not Starling's (injectable) one.
        oldest = f"{time.time() - self.settings.history_window_s:.6f}"
        threads: dict[str, float] = {}  # thread ts → its latest reply, for our parents
        try:
            if thread:
                found = await self._search("conversations.replies", channel_id, key, oldest, thread)
                if found is not None:
                    return found
            found = await self._search("conversations.history", channel_id, key, oldest, threads)
            if found is not None:
                return found
            newest = sorted(threads, key=threads.__getitem__, reverse=True)
            for root in [t for t in newest if t != thread][:THREAD_SCAN]:
                found = await self._search("conversations.replies", channel_id, key, oldest, root)
                if found is not None:
                    return found
        except _GiveUp:
            return None
        return None

    async def _search(
        self,
        method: str,
        channel_id: str,
        key: str,
        oldest: str,
        where: str | dict[str, float],
    ) -> str | None:
        """Page through the history (noting in `where` our threads with recent replies)
        or through the thread `where` names, looking for the key."""
        root = where if isinstance(where, str) else ""
        cursor = ""
        seen = 0
        rate_limited = 0
        while seen < self.settings.history_max_messages:
            params = {
                "channel": channel_id,
                "limit": str(min(HISTORY_PAGE, self.settings.history_max_messages - seen)),
                "oldest": oldest,
                "include_all_metadata": "true",
            }
            if root:
                params["ts"] = root
            if cursor:
                params["cursor"] = cursor
            try:
                page = await self.api.call(method, params=params)
            except SlackFailure as failure:
                if failure.error == "thread_not_found":
                    return None  # the parent is gone, and with it its thread
                if failure.error in _LOOKUP_GIVES_UP:
                    raise _GiveUp from None
                if failure.outcome is Outcome.RATE_LIMITED and rate_limited < (
                    LOOKUP_RATE_LIMIT_TRIES
                ):
                    rate_limited += 1
                    await self._clock.sleep(min(failure.retry_after_s or 1.0, LOOKUP_MAX_WAIT_S))
                    continue
                if failure.permanent:
                    log.warning(
                        "cannot read Slack history to check for duplicates (%s); "
                        "a message sent just before a crash may appear twice",
                        failure,
                    )
                    raise _GiveUp from None
                raise ChatError(str(failure), retry_after_s=failure.retry_after_s) from None
            messages = page.get("messages") or []
            for msg in messages:
                ts = str(msg.get("ts") or "")
                if _delivery_key(msg) == key:
                    in_thread = str(msg.get("thread_ts") or "")
                    return f"{ts}{THREAD_MARK}{in_thread}" if in_thread not in ("", ts) else ts
                latest = _float(msg.get("latest_reply"))
                if isinstance(where, dict) and latest > float(oldest) and _delivery_key(msg):
                    where[ts] = latest  # one of ours, with replies since `oldest`
            seen += len(messages)
            cursor = str((page.get("response_metadata") or {}).get("next_cursor") or "")
            if not page.get("has_more") or not cursor or not messages:
                break
        return None

    # --- membership -------------------------------------------------------------

    async def is_member(self, channel_id: str) -> bool:
        """Whether Starling can read (and so post in) the channel; True when unsure."""
        try:
            await self.api.call(
                "conversations.history", params={"channel": channel_id, "limit": "1"}
            )
        except SlackFailure as failure:
            return failure.error not in ("not_in_channel", "channel_not_found")
        return True

    async def fetch_identity(self) -> Identity:
        data = await self.api.call("auth.test", json={})
        self.identity = Identity(
            team_id=str(data.get("team_id") or ""),
            team=str(data.get("team") or ""),
            user_id=str(data.get("user_id") or ""),
            user=str(data.get("user") or ""),
            bot_id=str(data.get("bot_id") or ""),
            enterprise_id=data.get("enterprise_id") or None,
        )
        return self.identity

    # --- lifecycle --------------------------------------------------------------

    async def run(self, commands: CommandService) -> None:
        await receive(self, commands, self._stop)

    async def aclose(self) -> None:
        self._stop.set()
        await self.api.aclose()


def message_ts(message_ref: str) -> str:
    """The `ts` of a message Starling sent (a reply's ref also names its thread)."""
    return message_ref.partition(THREAD_MARK)[0]


def thread_root(message_ref: str) -> str:
    """The thread to reply in under a message: its own thread when it is a reply
    already (Slack threads are one level deep), else the message itself."""
    ts, _, root = message_ref.partition(THREAD_MARK)
    return root or ts


def _delivery_key(message: dict[str, Any]) -> str | None:
    metadata = message.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("event_type") != EVENT_TYPE:
        return None
    payload = metadata.get("event_payload")
    key = payload.get("key") if isinstance(payload, dict) else None
    return key if isinstance(key, str) else None


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _chat_error(failure: SlackFailure) -> ChatError:
    return ChatError(str(failure), permanent=failure.permanent, retry_after_s=failure.retry_after_s)
