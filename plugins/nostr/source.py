"""The nostr `Source` and `StreamingSource`: follow pubkeys and hashtags on every relay.

The cursor is the `created_at` of the newest note delivered (capped at now, so a
note dated in the future cannot make Starling skip what comes after it). Each
fetch and each reconnect asks for `since = cursor - since_overlap_s`: relays
answer `since` inclusively and authors' clocks drift, so a little overlap
costs nothing (the core dedupes by event id) and loses nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.clock import Clock
from bot.errors import Outcome, UpstreamError, UserError
from bot.model import FetchResult, Post, Target, TargetKind
from bot.protocols import PostSink
from plugins.nostr.events import Event
from plugins.nostr.pool import RelayPool
from plugins.nostr.posts import PostBuilder, Profiles
from plugins.nostr.settings import NostrSettings
from plugins.nostr.stream import StreamSession
from plugins.nostr.targets import matches, metadata_filter, note_filter, resolve_target

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

    def now(self) -> int:
        return int(self._clock.now().timestamp())

    async def resolve(self, kind: TargetKind, query: str) -> Target:
        if not self._pool.relays:
            raise UserError(NO_RELAYS)
        return resolve_target(self._network, kind, query)

    async def fetch(self, target: Target, cursor: str | None) -> FetchResult:
        """One REQ per relay until EOSE, merged and deduped by event id."""
        if not self._pool.relays:
            raise UpstreamError(Outcome.REFUSED, "no nostr relays are configured")
        previous = parse_cursor(cursor)
        since = previous - self._settings.since_overlap_s if previous is not None else None
        limit = self._settings.fetch_limit
        subs = {"notes": [note_filter(target, since=since, limit=limit)]}
        if target.kind is TargetKind.ACCOUNT:
            subs["profile"] = [metadata_filter([target.key])]
        answers = await self._pool.query(subs, max_events=limit)
        for answer in answers:
            for event in answer.events.get("profile", []):
                if event.pubkey == target.key:
                    self._profiles.learn(event)
        events: dict[str, Event] = {}
        for answer in answers:
            for event in answer.events.get("notes", []):
                if matches(target, event):
                    events.setdefault(event.id, event)
        posts: list[Post] = []
        newest = previous
        for event in events.values():
            post = self._builder.build(event)
            if post is None:
                continue
            posts.append(post)
            newest = max(newest or 0, min(event.created_at, self.now()))
        return FetchResult(posts, str(newest) if newest is not None else None)

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
