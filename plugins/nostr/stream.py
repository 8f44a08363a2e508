"""Long-lived REQ subscriptions on every relay, with reconnect, backoff and resume.

Followed pubkeys share `authors` filters and hashtags share `#t` filters, up to
`authors_per_filter` per REQ, so thousands of follows cost a handful of REQs on
one websocket per relay (another websocket only past `subscriptions_per_connection`
REQs). Each event that comes back is routed to the targets it really matches.
Stored events (before EOSE) are handed over as one batch per target; live events
one by one. On any drop the task reports it to the health record, waits with
jittered exponential backoff and resubscribes from the lowest cursor of the
targets in each REQ (minus the overlap); every target still drops what is older
than its own cursor, and an event that arrives twice (several relays, a resume)
is delivered once per target.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.model import Post, Target, TargetKind, Tombstone
from bot.protocols import PostSink
from plugins.nostr.events import KIND_DELETION, KIND_METADATA, Event
from plugins.nostr.pool import RelayPool, machine_prefix, outcome_for
from plugins.nostr.posts import PostBuilder, Profiles
from plugins.nostr.settings import NostrSettings
from plugins.nostr.targets import (
    NOTE_KINDS,
    hashtag,
    merged_limit,
    merged_note_filters,
    metadata_filter,
)
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
HANDOVER_WAIT_S = 10.0  # longest an EOSE waits for another relay's posts to be admitted

# A connection that lived this long was healthy: the next reconnect starts fast again.
STABLE_AFTER_S = 30.0
DELIVERED_MEMORY = 100_000


def _chunks(items: Sequence[Target], size: int) -> Iterator[list[Target]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


@dataclass(slots=True)
class Group:
    """The targets behind one REQ, indexed by what an event is matched on."""

    targets: list[Target]
    floors: dict[str, int | None]
    by_author: dict[str, list[Target]] = field(default_factory=dict)
    by_tag: dict[str, list[Target]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for target in self.targets:
            tag = hashtag(target)
            index, key = (self.by_tag, tag) if tag else (self.by_author, target.key)
            index.setdefault(key, []).append(target)

    def route(self, event: Event) -> list[Target]:
        """The targets this verified note belongs to, whatever the relay claims."""
        if event.kind not in NOTE_KINDS:
            return []
        found = list(self.by_author.get(event.pubkey, ()))
        if self.by_tag:
            for tag in {value.lower() for value in event.tag_values("t")}:
                found += self.by_tag.get(tag, ())
        return [t for t in found if self._recent_enough(t, event)]

    def _recent_enough(self, target: Target, event: Event) -> bool:
        """The REQ asked from the group's lowest cursor; each target keeps its own."""
        floor = self.floors.get(target.resource_key)
        return floor is None or event.created_at >= floor


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
        # event id → author of the notes delivered this run: a kind 5 deletion is
        # mirrored only for a note its own author wrote (NIP-09), known from here.
        self._authors: OrderedDict[str, str] = OrderedDict()
        # Posts handed to the core and not yet admitted. Another relay's copies of them
        # are skipped as seen, so its EOSE must wait for these before it may count as
        # "served": otherwise an outage could close before its caught-up posts count.
        self._handing_over = 0
        self._handed_over = asyncio.Event()
        self._handed_over.set()

    async def run(self, targets: list[Target]) -> None:
        async with asyncio.TaskGroup() as group:
            for url in self._pool.relays:
                for share in self.connection_shares(targets):
                    group.create_task(self._keep_connected(url, share))

    def connection_shares(self, targets: list[Target]) -> list[list[Target]]:
        """Targets per websocket: whole REQs, at most `subscriptions_per_connection` of them."""
        unique = list({t.resource_key: t for t in targets}.values())
        reqs = self._chunked(unique)
        size = self._settings.subscriptions_per_connection
        return [[t for req in reqs[i : i + size] for t in req] for i in range(0, len(reqs), size)]

    def _floors(self, targets: Sequence[Target]) -> dict[str, int | None]:
        overlap = self._settings.since_overlap_s
        floors: dict[str, int | None] = {}
        for target in targets:
            newest = self._newest.get(target.resource_key)
            floors[target.resource_key] = newest - overlap if newest is not None else None
        return floors

    def _chunked(self, targets: Sequence[Target]) -> list[list[Target]]:
        """Accounts and hashtags apart, sorted by cursor so a REQ's `since` fits its targets."""
        floors = self._floors(targets)

        def by_cursor(target: Target) -> tuple[bool, int]:
            floor = floors[target.resource_key]
            return floor is None, floor or 0

        size = self._settings.authors_per_filter
        accounts = sorted((t for t in targets if t.kind is TargetKind.ACCOUNT), key=by_cursor)
        tags = sorted((t for t in targets if t.kind is not TargetKind.ACCOUNT), key=by_cursor)
        return [*_chunks(accounts, size), *_chunks(tags, size)]

    async def _keep_connected(self, url: str, targets: list[Target]) -> None:
        backoff = self._settings.reconnect_min_s
        ceiling = max(self._settings.reconnect_max_s, backoff)
        while True:
            connected_at: float | None = None
            try:
                async with await self._pool.connect(url) as conn:
                    self._pool.record(url, None, conn.connect_s)
                    connected_at = time.monotonic()
                    await self._listen(url, conn, targets)
            except RelayError as err:
                self._pool.record(url, err, 0.0)
                log.info("nostr relay %s: %s; reconnecting", relay_host(url), err)
            if connected_at is not None and time.monotonic() - connected_at >= STABLE_AFTER_S:
                backoff = self._settings.reconnect_min_s
            await asyncio.sleep(min(backoff * random.uniform(0.8, 1.2), ceiling))
            backoff = min(backoff * 2, ceiling)

    async def _subscribe(self, conn: RelayConnection, targets: list[Target]) -> dict[str, Group]:
        """One REQ per chunk, from the cursors as they are now (this may be a resume)."""
        subs: dict[str, Group] = {}
        for number, chunk in enumerate(self._chunked(targets)):
            group = Group(chunk, self._floors(chunk))
            limit = merged_limit(self._settings.fetch_limit, len(chunk))
            filters = merged_note_filters(chunk, group.floors, limit=limit)
            if group.by_author:
                filters.append(metadata_filter(sorted(group.by_author), limit=limit))
                filters.append(self._deletion_filter(group, limit))
            sub_id = f"n{number}"
            await conn.request(sub_id, filters)
            subs[sub_id] = group
        return subs

    async def _listen(self, url: str, conn: RelayConnection, targets: list[Target]) -> None:
        """Subscribe, then relay events until the connection fails (raises `RelayError`).

        The last REQ's EOSE is a second success after the connect: the relay served the
        REQ, so the outage work sees it recovered without waiting for a poll. It is
        recorded after the stored notes are handed over, so they count as caught up.
        """
        subs = await self._subscribe(conn, targets)
        served = False
        # Stored events wait for EOSE and go to the core as one batch per target.
        stored: dict[str, list[tuple[Target, Event]]] = {sub_id: [] for sub_id in subs}
        async for message in conn.messages():
            if isinstance(message, EventMessage) and message.sub_id in subs:
                event = self._pool.verifier.verify(message.event)
                group = subs[message.sub_id]
                if event is None:
                    log.warning("%s sent an event with a bad id or signature; dropped", conn.host)
                elif event.kind == KIND_METADATA:
                    if event.pubkey in group.by_author:
                        self._profiles.learn(event)
                elif event.kind == KIND_DELETION:
                    await self._on_deletion(group, event)
                else:
                    await self._on_event(group, event, stored.get(message.sub_id))
            elif isinstance(message, EndOfStored):
                backlog = stored.pop(message.sub_id, None)
                if backlog:
                    await self._deliver_backlog(backlog)
                if not served and not stored:  # every REQ has had its stored notes
                    served = True
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(HANDOVER_WAIT_S):
                            await self._handed_over.wait()
                    self._pool.record(url, None, 0.0)
            elif isinstance(message, Closed) and message.sub_id in subs:
                prefix = machine_prefix(message.message) or "no reason given"
                raise RelayError(outcome_for(message.message), f"closed a subscription ({prefix})")
            elif isinstance(message, Notice):
                log.debug("notice from %s: %.200r", conn.host, message.message)

    async def _on_event(
        self, group: Group, event: Event, backlog: list[tuple[Target, Event]] | None
    ) -> None:
        """Route a verified note to its targets; deliver it now, or after EOSE."""
        for target in group.route(event):
            if self._seen(target, event):
                continue
            if backlog is not None:
                backlog.append((target, event))
                continue
            post = self._builder.build(event)
            if post is not None:
                await self._deliver(target, [(event, post)])

    async def _deliver_backlog(self, backlog: list[tuple[Target, Event]]) -> None:
        """Stored notes, built only now so profiles sent alongside them are known."""
        per_target: dict[str, tuple[Target, list[tuple[Event, Post]]]] = {}
        for target, event in backlog:
            post = self._builder.build(event)
            if post is not None:
                per_target.setdefault(target.resource_key, (target, []))[1].append((event, post))
        for target, items in per_target.values():
            await self._deliver(target, items)

    def _deletion_filter(self, group: Group, limit: int) -> dict[str, Any]:
        """Kind 5 deletions by the followed authors, from the group's lowest cursor."""
        dated = [floor for floor in group.floors.values() if floor is not None]
        since = min(dated) if dated else self._now()
        return {
            "kinds": [KIND_DELETION],
            "authors": sorted(group.by_author),
            "since": max(0, since),
            "limit": limit,
        }

    async def _on_deletion(self, group: Group, event: Event) -> None:
        """A followed author deleted notes: retract those Starling relayed for them."""
        targets = group.by_author.get(event.pubkey)
        if not targets:
            return
        gone = [
            note_id
            for note_id in dict.fromkeys(event.tag_values("e"))
            if self._authors.get(note_id) == event.pubkey
        ]
        if not gone:
            return  # not ours, not its author's, or already retracted (another relay)
        for note_id in gone:
            del self._authors[note_id]  # so another relay's copy of the deletion is ignored
        target = targets[0]
        newest = self._newest.get(target.resource_key)
        tombstones = [Tombstone(self._builder.network, note_id) for note_id in gone]
        await self._sink(
            target, [], str(newest) if newest is not None else None, deleted=tombstones
        )

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
            self._authors[event.id] = event.pubkey
            fresh.append(post)
            newest = max(newest or 0, min(event.created_at, now))
        while len(self._delivered) > DELIVERED_MEMORY:
            self._delivered.popitem(last=False)
        while len(self._authors) > DELIVERED_MEMORY:
            self._authors.popitem(last=False)
        if not fresh:
            return
        self._newest[target.resource_key] = newest
        self._handing_over += 1
        self._handed_over.clear()
        try:
            await self._sink(target, fresh, str(newest) if newest is not None else None)
        finally:
            self._handing_over -= 1
            if not self._handing_over:
                self._handed_over.set()
