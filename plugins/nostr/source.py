"""The nostr `Source` and `StreamingSource`: follow pubkeys and hashtags on every relay.

The cursor is the `created_at` of the newest note delivered (capped at now, so a
note dated in the future cannot make Starling skip what comes after it). Each
fetch and each reconnect asks for `since = cursor - since_overlap_s`: relays
answer `since` inclusively and authors' clocks drift, so a little overlap
costs nothing (the core dedupes by event id) and loses nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from bot.clock import Clock
from bot.errors import Outcome, UpstreamError, UserError
from bot.model import FetchResult, Post, Target, TargetKind
from bot.protocols import PostSink
from plugins.nostr.batch import FetchBatcher, Wanted
from plugins.nostr.clamp import ClampBook, found_more, matched, probe_filter
from plugins.nostr.events import Event
from plugins.nostr.pool import RelayAnswer, RelayPool
from plugins.nostr.posts import PostBuilder, Profiles
from plugins.nostr.settings import NostrSettings
from plugins.nostr.stream import Group, StreamSession
from plugins.nostr.targets import (
    merged_limit,
    merged_note_filters,
    metadata_filter,
    resolve_target,
)
from plugins.nostr.wire import relay_host

log = logging.getLogger(__name__)

ALL_RELAYS = "all relays"  # the unit announced when every configured relay is down

NO_RELAYS = (
    "no nostr relays are configured; the operator sets [nostr] relays = "
    '["wss://…"] (or STARLING_NOSTR__RELAYS) and restarts Starling'
)


def parse_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        value = int(cursor)
    except ValueError:
        return None  # a cursor from an older format: start over, the core dedupes
    return value if value >= 0 else None


class NostrSource:
    def __init__(
        self,
        *,
        network: str,
        pool: RelayPool,
        builder: PostBuilder,
        profiles: Profiles,
        clock: Clock,
        settings: NostrSettings,
    ) -> None:
        self._network = network
        self._pool = pool
        self._builder = builder
        self._profiles = profiles
        self._clock = clock
        self._settings = settings
        self._batcher = FetchBatcher(
            self._query, window_s=settings.fetch_batch_window_s, size=settings.authors_per_filter
        )
        self._clamps = ClampBook()

    def now(self) -> int:
        return int(self._clock.now().timestamp())

    # --- for the outage work: which hosts serve a follow ------------------------------

    def _hosts(self) -> list[str]:
        return list(dict.fromkeys(relay_host(url) for url in self._pool.relays))

    def host_pools(self) -> dict[str, list[str]]:
        """Several relays back each other up: only all of them down is an outage."""
        hosts = self._hosts()
        return {ALL_RELAYS: hosts} if len(hosts) > 1 else {}

    def stream_host(self, target: Target) -> str | None:
        """Every follow is streamed from every relay: any of them stands for the pool
        (`host_pools`), which the core announces."""
        hosts = self._hosts()
        if target.network != self._network or not hosts:
            return None
        return hosts[0]

    async def resolve(self, kind: TargetKind, query: str) -> Target:
        if not self._pool.relays:
            raise UserError(NO_RELAYS)
        return resolve_target(self._network, kind, query)

    async def fetch(self, target: Target, cursor: str | None) -> FetchResult:
        """This follow's notes since its cursor, asked together with other follows' polls."""
        if not self._pool.relays:
            raise UpstreamError(Outcome.REFUSED, "no nostr relays are configured")
        previous = parse_cursor(cursor)
        since = previous - self._settings.since_overlap_s if previous is not None else None
        events = await self._batcher.fetch(target, since)
        posts: list[Post] = []
        newest = previous
        for event in events:
            post = self._builder.build(event)
            if post is None:
                continue
            posts.append(post)
            newest = max(newest or 0, min(event.created_at, self.now()))
        return FetchResult(posts, str(newest) if newest is not None else None)

    async def _query(self, batch: Sequence[Wanted]) -> dict[str, list[Event]]:
        """One REQ per relay for the whole batch; again one by one if a relay cut it short."""
        found = await self._query_together(batch)
        if found is None:
            found = {}
            for wanted in batch:
                alone = await self._query_together([wanted])
                found.update(alone or {})
        return found

    async def _query_together(self, batch: Sequence[Wanted]) -> dict[str, list[Event]] | None:
        """Events per follow, or None when a relay may have cut the answer short."""
        targets = [w.target for w in batch]
        floors = {w.target.resource_key: w.since for w in batch}
        alone = len(batch) == 1
        limit = (
            self._settings.fetch_limit
            if alone
            else merged_limit(self._settings.fetch_limit, len(batch))
        )
        group = Group(targets, floors)
        note_filters = merged_note_filters(targets, floors, limit=limit)
        subs = {"notes": note_filters}
        pubkeys = sorted(group.by_author)
        if pubkeys:
            subs["profile"] = [metadata_filter(pubkeys)]
        answers = await self._pool.query(subs, max_events=limit)
        if not alone and await self._cut_short(answers, note_filters, limit):
            return None
        for answer in answers:
            for event in answer.events.get("profile", []):
                if event.pubkey in group.by_author:
                    self._profiles.learn(event)
        found: dict[str, dict[str, Event]] = {t.resource_key: {} for t in targets}
        for answer in answers:
            for event in answer.events.get("notes", []):
                for target in group.route(event):
                    found[target.resource_key].setdefault(event.id, event)
        return {key: list(events.values()) for key, events in found.items()}

    async def _cut_short(
        self, answers: Sequence[RelayAnswer], note_filters: list[dict[str, Any]], limit: int
    ) -> bool:
        """Whether a relay may have left notes out: it sent `limit` of them, or as many
        as it was found to cut at (`ClampBook`: probed once per new largest answer)."""
        for answer in answers:
            notes = answer.events.get("notes", [])
            if len(notes) >= limit:
                return True
            if answer.error is not None or not notes or not answer.url:
                continue
            by_filter = [[e for e in notes if matched(f, e)] for f in note_filters]
            counts = [len(found) for found in by_filter]
            if self._clamps.known_cut(answer.url, counts):
                return True
            if not self._clamps.needs_probe(answer.url, counts):
                continue
            asked = [
                (f"p{n}", f, found)
                for n, (f, found) in enumerate(zip(note_filters, by_filter, strict=True))
                if found
            ]
            probes = {sub_id: [probe_filter(f, found)] for sub_id, f, found in asked}
            more = await self._pool.query_relay(
                answer.url, probes, max_events=max(p[0]["limit"] for p in probes.values())
            )
            if more.error is not None:
                continue  # cannot tell; the next answer this large asks again
            cut_at = next(
                (
                    len(found)
                    for sub_id, f, found in asked
                    if found_more(more.events.get(sub_id, []), f, found)
                ),
                None,
            )
            self._clamps.learn(answer.url, counts, cut_at=cut_at)
            if cut_at is not None:
                log.info(
                    "nostr relay %s cut an answer at %d notes; such batches are asked "
                    "again one follow at a time",
                    answer.host,
                    len(notes),
                )
                return True
        return False

    async def stream(
        self, targets: list[Target], cursors: Mapping[str, str | None], sink: PostSink
    ) -> None:
        """Long-lived subscriptions on every relay; returns at once if there is nothing to do."""
        mine = [t for t in targets if t.network == self._network]
        if not self._pool.relays or not mine:
            return
        start = {t.resource_key: parse_cursor(cursors.get(t.resource_key)) for t in mine}
        session = StreamSession(
            pool=self._pool,
            builder=self._builder,
            profiles=self._profiles,
            settings=self._settings,
            now=self.now,
            sink=sink,
            newest=start,
        )
        await session.run(mine)
