"""Long-lived REQ subscriptions on every relay, with reconnect, backoff and resume.

One task per relay (per `subscriptions_per_connection` targets) keeps a websocket
open. Stored events (before EOSE) are handed over as one batch; live events one
by one. On any drop the task reports it to the health record, waits with
jittered exponential backoff and resubscribes with `since` = the newest note it
delivered, so nothing published meanwhile is lost. An event that arrives from
several relays is delivered once per target.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable

from bot.model import Post, Target, TargetKind
from bot.protocols import PostSink
from plugins.nostr.events import Event
from plugins.nostr.pool import RelayPool, machine_prefix, outcome_for
from plugins.nostr.posts import PostBuilder, Profiles
from plugins.nostr.settings import NostrSettings
from plugins.nostr.targets import matches, metadata_filter, note_filter
from plugins.nostr.wire import (
    Closed,
    EndOfStored,
    EventMessage,
    Notice,
    RelayConnection,
    RelayError,
    relay_host,
)

log = logging.getLogger(__name__)

# A connection that lived this long was healthy: the next reconnect starts fast again.
STABLE_AFTER_S = 30.0
DELIVERED_MEMORY = 100_000
PROFILES_SUB = "profiles"


class StreamSession:
    """One `stream()` call: shared dedupe memory and cursors across relays and reconnects."""

    def __init__(
        self,
        *,
        pool: RelayPool,
        builder: PostBuilder,
        profiles: Profiles,
        settings: NostrSettings,
        now: Callable[[], int],
        sink: PostSink,
        newest: dict[str, int | None],
    ) -> None:
        self._pool = pool
        self._builder = builder
        self._profiles = profiles
        self._settings = settings
        self._now = now
        self._sink = sink
        self._newest = newest
        self._delivered: OrderedDict[str, None] = OrderedDict()

    async def run(self, targets: list[Target]) -> None:
        size = self._settings.subscriptions_per_connection
        chunks = [targets[i : i + size] for i in range(0, len(targets), size)]
        async with asyncio.TaskGroup() as group:
            for url in self._pool.relays:
                for chunk in chunks:
                    group.create_task(self._keep_connected(url, chunk))

    async def _keep_connected(self, url: str, targets: list[Target]) -> None:
        backoff = self._settings.reconnect_min_s
        ceiling = max(self._settings.reconnect_max_s, backoff)
        while True:
            connected_at: float | None = None
            try:
                async with await self._pool.connect(url) as conn:
                    self._pool.record(url, None, conn.connect_s)
                    connected_at = time.monotonic()
                    await self._listen(conn, targets)
            except RelayError as err:
                self._pool.record(url, err, 0.0)
                log.info("nostr relay %s: %s; reconnecting", relay_host(url), err)
            if connected_at is not None and time.monotonic() - connected_at >= STABLE_AFTER_S:
                backoff = self._settings.reconnect_min_s
            await asyncio.sleep(min(backoff * random.uniform(0.8, 1.2), ceiling))
            backoff = min(backoff * 2, ceiling)

    async def _listen(self, conn: RelayConnection, targets: list[Target]) -> None:
        """Subscribe, then relay events until the connection fails (raises `RelayError`)."""
        subs = {f"n{i}": target for i, target in enumerate(targets)}
        overlap = self._settings.since_overlap_s
        for sub_id, target in subs.items():
            newest = self._newest.get(target.resource_key)
            since = newest - overlap if newest is not None else None
            filters = [note_filter(target, since=since, limit=self._settings.fetch_limit)]
            await conn.request(sub_id, filters)
        authors = {t.key for t in targets if t.kind is TargetKind.ACCOUNT}
        if authors:
            await conn.request(PROFILES_SUB, [metadata_filter(sorted(authors))])
        # Stored events wait for EOSE and go to the core as one batch per target.
        stored: dict[str, list[tuple[Event, Post]]] = {sub_id: [] for sub_id in subs}
        async for message in conn.messages():
            if isinstance(message, EventMessage):
                event = self._pool.verifier.verify(message.event)
                if event is None:
                    log.warning("%s sent an event with a bad id or signature; dropped", conn.host)
                elif message.sub_id == PROFILES_SUB:
                    if event.pubkey in authors:
                        self._profiles.learn(event)
                elif message.sub_id in subs:
                    await self._on_event(subs[message.sub_id], event, stored.get(message.sub_id))
            elif isinstance(message, EndOfStored):
                batch = stored.pop(message.sub_id, None)
                if batch:
                    await self._deliver(subs[message.sub_id], batch)
            elif isinstance(message, Closed) and message.sub_id in subs:
                prefix = machine_prefix(message.message) or "no reason given"
                raise RelayError(outcome_for(message.message), f"closed a subscription ({prefix})")
            elif isinstance(message, Notice):
                log.debug("notice from %s: %.200r", conn.host, message.message)

    async def _on_event(
        self, target: Target, event: Event, backlog: list[tuple[Event, Post]] | None
    ) -> None:
        """Keep a verified event if it matches; deliver it now, or after EOSE."""
        if not matches(target, event) or self._seen(target, event):
            return
        post = self._builder.build(event)
        if post is None:
            return
        if backlog is not None:
            backlog.append((event, post))
        else:
            await self._deliver(target, [(event, post)])

    def _key(self, target: Target, event: Event) -> str:
        return f"{target.resource_key}|{event.id}"

    def _seen(self, target: Target, event: Event) -> bool:
        return self._key(target, event) in self._delivered

    async def _deliver(self, target: Target, items: list[tuple[Event, Post]]) -> None:
        """Hand new posts to the core once per target, with the cursor they advance to."""
        fresh: list[Post] = []
        newest = self._newest.get(target.resource_key)
        now = self._now()
        for event, post in items:
            key = self._key(target, event)
            if key in self._delivered:
                continue  # the same event from another relay got here first
            self._delivered[key] = None
            fresh.append(post)
            newest = max(newest or 0, min(event.created_at, now))
        while len(self._delivered) > DELIVERED_MEMORY:
            self._delivered.popitem(last=False)
        if not fresh:
            return
        self._newest[target.resource_key] = newest
        await self._sink(target, fresh, str(newest) if newest is not None else None)
