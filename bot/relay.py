"""The relay pipeline for one upstream resource.

fetch → dedupe → filter → render → durable outbox → chat send → record delivery →
advance cursor. Dedupe and outbox rows are written in one transaction; the
cursor is stored only once every row admitted under it is recorded as
delivered, in fetch order. A crash anywhere therefore loses nothing (the old
cursor refetches, the outbox resends) and doubles nothing (seen keys and the
chat's idempotency keys).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.crashpoints import crashpoint
from bot.dispatch import Dispatcher
from bot.filters import CompiledFilters
from bot.health import polling
from bot.known import KnownPosts, is_placeholder, known_posts, pack
from bot.model import (
    ChannelRef,
    FetchResult,
    Post,
    RichMessage,
    Subscription,
    Target,
    Tombstone,
)
from bot.protocols import Source
from bot.render import render
from bot.store.base import NewOutboxRow, Store, StoredResource
from bot.supervise import Supervisor

log = logging.getLogger(__name__)

_EPOCH = datetime.min.replace(tzinfo=UTC)
MIRROR_WINDOW_S = 3 * 24 * 3600  # how far back a cross-post is recognised
_URL = re.compile(r"https?://\S+")
_NOT_WORD = re.compile(r"[\W_]+")
NEVER_EDITED = "-"  # stored version of a post admitted unedited; "" means not known


@dataclass(frozen=True, slots=True)
class Follower:
    """A subscription as the relay needs it: its channel's row id and compiled filters.

    Only what polling needs, not the whole `Subscription`: 100,000 of these stay in
    memory. `since` is the subscription's creation (epoch seconds): an edit of a post
    written before the follow is no news.
    """

    sub_id: int
    channel: ChannelRef
    channel_id: int
    filters: CompiledFilters
    interval_s: float
    since: float | None = None
    mirror_of: int | None = None  # stands in for that subscription while its network is down
    grouped: bool = False  # in a mirror group: cross-posts are recognised by fingerprint

    @classmethod
    def of(cls, sub: Subscription, channel_id: int, *, grouped: bool = False) -> Follower:
        since = sub.created_at.timestamp() if sub.created_at is not None else None
        return cls(
            sub.id,
            sub.channel,
            channel_id,
            CompiledFilters.of(sub.filters),
            sub.interval_s,
            since,
            sub.mirror_of,
            grouped,
        )


@dataclass(slots=True)
class ResourceState:
    """What the relay keeps in memory per resource (kept small: 100k of these fit)."""

    id: int
    target: Target
    stored_cursor: str | None  # the cursor in the store: it moves once deliveries are recorded
    followers: tuple[Follower, ...]
    interval_s: float
    cursor: str | None  # where the next fetch starts (may be ahead of the stored one)
    digest: int = 0  # hash of the last fetch's keys: unchanged → no database work
    host: str = ""  # the host its last request went to (for outage announcements)
    admitted: int = 0  # posts queued so far this run (for "N posts caught up")
    known: bytes = b""  # the last admitted fetch, `bot.known.pack`ed: sources skip rebuilding it
    # The scheduler's bookkeeping, here rather than in an object of its own (memory).
    failures: int = 0  # consecutive failed polls (backoff)
    # The scheduler's bucket this resource waits in; entries in any other bucket are stale.
    bucket: list[ResourceState] | None = field(default=None, repr=False)
    running: bool = False
    advance: asyncio.Task[None] | None = field(default=None, repr=False)

    @classmethod
    def of(
        cls, stored: StoredResource, followers: tuple[Follower, ...], interval_s: float
    ) -> ResourceState:
        return cls(stored.id, stored.target, stored.cursor, followers, interval_s, stored.cursor)


class StalePlaceholder(Exception):
    """A post a source left out as already known is new to the store (see bot/known.py)."""


class Relay:
    def __init__(
        self,
        store: Store,
        sources: Mapping[str, Source],
        dispatcher: Dispatcher,
        supervisor: Supervisor,
        *,
        text_limit: int,
        mirror_footer: Callable[[Follower, str], str | None] = lambda follower, network: None,
    ) -> None:
        self._store = store
        self._sources = sources
        self._dispatcher = dispatcher
        self._supervisor = supervisor
        self._text_limit = text_limit
        self._mirror_footer = mirror_footer
        self.admitted = 0
        # Networks whose source opted in to `bot.known` (`reads_known_posts`), asked once
        # per network: only for those is a fetch's record packed and published.
        self._reads_known: dict[str, bool] = {}

    def _wants_known(self, network: str) -> bool:
        wants = self._reads_known.get(network)
        if wants is None:
            source = self._sources.get(network)
            wants = self._reads_known[network] = bool(getattr(source, "reads_known_posts", False))
        return wants

    async def poll(self, state: ResourceState) -> FetchResult:
        """Fetch one resource and queue what is new; raises `UpstreamError` on failure."""
        result = await self._fetch(state)
        if result.deleted:
            await self._dispatcher.retract(result.deleted)
        if not result.not_modified:
            try:
                await self.ingest(state, result.posts, result.cursor)
            except StalePlaceholder:
                state.known = b""  # a placeholder was new after all: fetch everything whole
                result = await self._fetch(state)
                if not result.not_modified:
                    await self.ingest(state, result.posts, result.cursor)
        return result

    async def _fetch(self, state: ResourceState) -> FetchResult:
        target = state.target
        token = polling.set(state)
        known = known_posts.set(KnownPosts(state.known)) if state.known else None
        try:
            return await self._sources[target.network].fetch(target, state.cursor)
        finally:
            if known is not None:
                known_posts.reset(known)
            polling.reset(token)

    async def ingest(
        self,
        state: ResourceState,
        posts: list[Post],
        cursor: str | None,
        deleted: Sequence[Tombstone] = (),
    ) -> None:
        """Admit fetched (or streamed) posts and advance the cursor once they are delivered.

        `deleted` (posts removed upstream) carry no position: alone, they leave the cursor.
        """
        if deleted:
            await self._dispatcher.retract(deleted)
            if not posts:
                return
        by_uid = {post.uid: post for post in posts}
        keys = list(by_uid)
        versions = {
            uid: post.edited_at.isoformat()
            for uid, post in by_uid.items()
            if post.edited_at is not None
        }
        digest = hash((tuple(keys), tuple(versions.values())))
        items = []
        if keys and digest != state.digest and state.followers:
            grouped = [f.channel_id for f in state.followers if f.grouped]
            prints = (
                await self._store.mirror_prints(grouped, time.time() - MIRROR_WINDOW_S)
                if grouped
                else set()
            )
            items = await self._store.admit(
                state.id,
                keys,
                lambda fresh: self._rows(state, by_uid, fresh, prints),
                {uid: versions.get(uid, NEVER_EDITED) for uid in keys},
            )
            # A placeholder's version is the stored one (it was admitted with it): skip it.
            versions = {u: v for u, v in versions.items() if not is_placeholder(by_uid[u])}
            if versions:
                for uid, refs in await self._store.edited(state.id, versions):
                    message = render(by_uid[uid], text_limit=self._text_limit)
                    for channel, ref in refs:
                        self._dispatcher.edit(channel, ref, message)
            self.admitted += len(items)
            state.admitted += len(items)
            if items:
                crashpoint("after_admit")
        unchanged = digest == state.digest
        state.digest = digest
        # Durable now (or already, when the digest matched): the next fetch may skip them.
        if not state.followers:
            state.known = b""
        elif (not unchanged or not state.known) and self._wants_known(state.target.network):
            state.known = pack(posts)  # same keys and versions pack to the same bytes
        futures = self._dispatcher.submit(items) if items else []
        # What was fetched is durable now (seen keys and outbox rows), so the next fetch
        # may start from the new position; the STORED cursor still waits for delivery.
        state.cursor = cursor
        if cursor != state.stored_cursor or futures:
            self._advance_after(state, cursor, futures)

    def _rows(
        self,
        state: ResourceState,
        by_uid: Mapping[str, Post],
        fresh: set[str],
        prints: set[tuple[int, str]],
    ) -> list[NewOutboxRow]:
        new_posts = sorted(
            (by_uid[uid] for uid in fresh), key=lambda p: (p.created_at or _EPOCH, p.native_id)
        )
        if any(is_placeholder(post) for post in new_posts):
            raise StalePlaceholder  # admit rolls back; `poll` fetches again without them
        rows = []
        for post in new_posts:
            message: RichMessage | None = None
            for follower in state.followers:
                if not follower.filters.accepts(post):
                    continue
                if post.edited_at is not None and _older_than(post, follower):
                    continue  # an edit of a post from before the follow is no news
                footer = None
                if follower.mirror_of is not None:
                    footer = self._mirror_footer(follower, state.target.network)
                    if footer is None:
                        continue  # a mirror speaks only while its primary is down
                fingerprint = ""
                if follower.grouped:
                    fingerprint = post_fingerprint(post)
                    if (follower.channel_id, fingerprint) in prints:
                        continue  # the same text already came through the other network
                    prints.add((follower.channel_id, fingerprint))
                if footer is not None:
                    mirrored = render(post, text_limit=self._text_limit, footer=footer)
                    rows.append(
                        NewOutboxRow(
                            follower.channel_id, follower.sub_id, post.uid, mirrored, fingerprint
                        )
                    )
                    continue
                if message is None:
                    message = render(post, text_limit=self._text_limit)
                rows.append(
                    NewOutboxRow(
                        follower.channel_id, follower.sub_id, post.uid, message, fingerprint
                    )
                )
        return rows

    def _advance_after(
        self, state: ResourceState, cursor: str | None, futures: list[asyncio.Future[bool]]
    ) -> None:
        previous = state.advance

        async def advance() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            if futures:
                await asyncio.wait(futures)
            if all(f.result() for f in futures) and cursor != state.stored_cursor:
                await self._store.set_cursor(state.id, cursor)
                state.stored_cursor = cursor

        state.advance = self._supervisor.spawn(advance(), name=f"cursor-{state.id}")


def _older_than(post: Post, follower: Follower) -> bool:
    """Written before the follow: a stream's edit event (Mastodon `status.update`)
    can bring back a post the channel never saw; a follow starts from now."""
    return (
        post.created_at is not None
        and follower.since is not None
        and post.created_at.timestamp() < follower.since
    )


def post_fingerprint(post: Post) -> str:
    """The same words posted on two networks give the same fingerprint.

    Links (shortened differently per network) and punctuation are dropped, and only
    the opening words count, since each network truncates long posts its own way.
    """
    words = _NOT_WORD.sub(" ", _URL.sub(" ", post.text or post.title)).casefold().split()
    basis = " ".join(words)[:100]
    return hashlib.blake2b(basis.encode(), digest_size=8).hexdigest()
