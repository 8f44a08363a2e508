"""SQLite backend: aiosqlite, WAL, versioned migrations, one file for all state.

This module holds subscriptions and the relay pipeline (seen keys, outbox,
deliveries, cursors); the other areas are mixins in `sqlite_*` modules. aiosqlite
pays a thread hop per await, so hot paths use one multi-row statement per poll
rather than one per key.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from bot.model import ChannelRef, Filters, Subscription, Target, TargetKind
from bot.store.base import (
    NewOutboxRow,
    OutboxItem,
    StoredResource,
)
from bot.store.sqlite_core import (
    chunks,
    filters_decoder,
    json_encoder,
    message_decoder,
)
from bot.store.sqlite_health import HealthRows
from bot.store.sqlite_postback import PostbackRows
from bot.store.sqlite_records import RecordRows

_LOAD_CHUNK = 512  # subscriptions per chunk of `load_followers`
_BULK_CACHE_KIB = -256  # page cache while loading every subscription (negative: KiB)


class SqliteStore(HealthRows, PostbackRows, RecordRows):
    """The `Store` protocol on one SQLite file."""

    # --- subscriptions ----------------------------------------------------------------

    async def find_resource(self, target: Target) -> StoredResource | None:
        async with self.db.execute(
            "SELECT id, cursor FROM resources WHERE network = ? AND kind = ? AND key = ?",
            (target.network, target.kind.value, target.key),
        ) as cur:
            row = await cur.fetchone()
        return StoredResource(int(row[0]), target, row[1]) if row else None

    async def create_subscription(
        self,
        channel: ChannelRef,
        target: Target,
        filters: Filters,
        interval_s: float,
        created_by: str,
        baseline_keys: Sequence[str],
        backlog: Callable[[Subscription, int], list[NewOutboxRow]],
        cursor: str | None,
        mirror_of: int | None = None,
    ) -> tuple[Subscription, list[OutboxItem]]:
        now = datetime.now(UTC)
        async with self._transaction() as db:
            channel_id = await self._ensure_channel(db, channel)
            async with db.execute(
                "INSERT INTO resources (network, kind, key, display, cursor, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (network, kind, key) DO NOTHING "
                "RETURNING id",
                (
                    target.network,
                    target.kind.value,
                    target.key,
                    target.display,
                    cursor,
                    now.isoformat(),
                ),
            ) as cur:
                created = await cur.fetchone()
            if created is not None:
                resource_id = int(created[0])
                await self._insert_seen(db, resource_id, baseline_keys)
            else:
                async with db.execute(
                    "SELECT id FROM resources WHERE network = ? AND kind = ? AND key = ?",
                    (target.network, target.kind.value, target.key),
                ) as cur:
                    existing = await cur.fetchone()
                assert existing is not None
                resource_id = int(existing[0])
            async with db.execute(
                "INSERT INTO subscriptions (channel_id, resource_id, filters, interval_s, "
                "created_by, created_at, mirror_of) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (channel_id, resource_id) DO NOTHING RETURNING id",
                (
                    channel_id,
                    resource_id,
                    json_encoder.encode(filters).decode(),
                    interval_s,
                    created_by,
                    now.isoformat(),
                    mirror_of,
                ),
            ) as cur:
                inserted = await cur.fetchone()
            if inserted is None:
                raise DuplicateSubscription(await self._sub_id(db, channel_id, resource_id))
            sub = Subscription(
                id=int(inserted[0]),
                channel=channel,
                target=target,
                filters=filters,
                interval_s=interval_s,
                created_by=created_by,
                created_at=now,
                mirror_of=mirror_of,
            )
            items = await self._insert_outbox(db, backlog(sub, channel_id))
        return sub, items

    async def _sub_id(self, db: aiosqlite.Connection, channel_id: int, resource_id: int) -> int:
        async with db.execute(
            "SELECT id FROM subscriptions WHERE channel_id = ? AND resource_id = ?",
            (channel_id, resource_id),
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    _SUB_SELECT = (
        "SELECT s.id, s.channel_id, r.network, r.kind, r.key, r.display, s.filters, "
        "s.interval_s, s.created_by, s.created_at, s.paused_reason, s.mirror_of "
        "FROM subscriptions s JOIN resources r ON r.id = s.resource_id "
    )

    def _sub_from_row(self, row: Any, memo: dict[Any, Any] | None = None) -> Subscription:
        """One subscription from a `_SUB_SELECT` row.

        With `memo` (one dict per bulk load), equal values share one object: every
        row otherwise brings its own copy of the network name, filters, author and
        interval, which at 100,000 subscriptions is most of their memory. All of
        them are immutable, so sharing is invisible to callers.
        """
        key, display = row[4], row[5]
        target = Target(
            sys.intern(row[2]), TargetKind(row[3]), key, key if display == key else display
        )
        filters: Filters | None = None
        created_by: str = row[8]
        if memo is not None:
            filters = memo.get(("f", row[6]))
            created_by = memo.setdefault(("b", row[8]), row[8])
        if filters is None:
            filters = filters_decoder.decode(row[6])
            if memo is not None:
                memo[("f", row[6])] = filters
        created_at = datetime.fromisoformat(row[9])  # unique per row: not worth a memo
        return Subscription(
            id=int(row[0]),
            channel=self._channel(int(row[1])),
            target=target,
            filters=filters,
            interval_s=float(row[7])
            if memo is None
            else memo.setdefault(("i", row[7]), float(row[7])),
            created_by=created_by,
            created_at=created_at,
            paused_reason=row[10],
            mirror_of=None if row[11] is None else int(row[11]),
        )

    async def remove_subscription(self, channel: ChannelRef, sub_id: int) -> Subscription | None:
        async with self._transaction() as db:
            channel_id = self._known_channel(channel)
            if channel_id is None:
                return None
            async with db.execute(
                self._SUB_SELECT + "WHERE s.id = ? AND s.channel_id = ?", (sub_id, channel_id)
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                return None
            # Its mirrors go with it; undelivered rows would reach a channel that no
            # longer wants them.
            gone = "SELECT id FROM subscriptions WHERE id = ? OR mirror_of = ?"
            await db.execute(
                f"DELETE FROM outbox WHERE subscription_id IN ({gone})",  # noqa: S608
                (sub_id, sub_id),
            )
            await db.execute(
                "DELETE FROM subscriptions WHERE id = ? OR mirror_of = ?", (sub_id, sub_id)
            )
            await db.execute(
                "DELETE FROM seen WHERE resource_id NOT IN (SELECT resource_id FROM subscriptions)"
            )
            await db.execute(
                "DELETE FROM resources WHERE id NOT IN (SELECT resource_id FROM subscriptions)"
            )
            return self._sub_from_row(row)

    async def list_subscriptions(self, channel: ChannelRef | None = None) -> list[Subscription]:
        params: tuple[int, ...] = ()
        if channel is None:
            query = self._SUB_SELECT + "ORDER BY s.id"
        else:
            # Reading must not write: an unknown channel simply has no subscriptions.
            channel_id = self._known_channel(channel)
            if channel_id is None:
                return []
            query, params = self._SUB_SELECT + "WHERE s.channel_id = ? ORDER BY s.id", (channel_id,)
        async with self.db.execute(query, params) as cur:
            return [self._sub_from_row(row) for row in await cur.fetchall()]

    async def subscriptions_for(self, resource_id: int) -> list[tuple[Subscription, int]]:
        async with self.db.execute(
            self._SUB_SELECT + "WHERE s.resource_id = ? AND s.paused_reason = '' ORDER BY s.id",
            (resource_id,),
        ) as cur:
            return [(self._sub_from_row(row), int(row[1])) for row in await cur.fetchall()]

    async def active_resources(self) -> list[StoredResource]:
        async with self.db.execute(
            "SELECT id, network, kind, key, display, cursor FROM resources r WHERE EXISTS "
            "(SELECT 1 FROM subscriptions s WHERE s.resource_id = r.id AND s.paused_reason = '')"
        ) as cur:
            return [
                StoredResource(int(r[0]), Target(r[1], TargetKind(r[2]), r[3], r[4]), r[5])
                for r in await cur.fetchall()
            ]

    async def load_followers(self) -> AsyncIterator[list[tuple[StoredResource, Subscription, int]]]:
        memo: dict[Any, Any] = {}
        # A small page cache for the bulk read: with the default 2 MiB, the pages read
        # once stay in the allocator's arena after `shrink_memory` (~300 B per row).
        await self.db.execute(f"PRAGMA cache_size = {_BULK_CACHE_KIB}")
        try:
            async with self.db.execute(
                self._SUB_SELECT.replace("SELECT ", "SELECT r.id, r.cursor, ", 1)
                # By resource (the `subscriptions_resource` index's order: no sort), so
                # each resource's followers come together.
                + "WHERE s.paused_reason = '' ORDER BY s.resource_id, s.id"
            ) as cur:
                # In chunks: the raw rows are several times the size of what is kept.
                while rows := await cur.fetchmany(_LOAD_CHUNK):
                    chunk = []
                    for row in rows:
                        sub = self._sub_from_row(row[2:], memo)
                        channel_id = memo.setdefault(("c", row[3]), int(row[3]))
                        chunk.append(
                            (StoredResource(int(row[0]), sub.target, row[1]), sub, channel_id)
                        )
                    del rows
                    yield chunk
        finally:
            await self.db.execute("PRAGMA cache_size = -2000")  # SQLite's default, 2 MiB
            await self.db.execute("PRAGMA shrink_memory")

    async def resume_subscription(self, channel: ChannelRef, sub_id: int) -> Subscription | None:
        async with self._transaction() as db:
            channel_id = self._known_channel(channel)
            if channel_id is None:
                return None
            async with db.execute(
                "UPDATE subscriptions SET paused_reason = '' WHERE id = ? AND channel_id = ? "
                "RETURNING id",
                (sub_id, channel_id),
            ) as cur:
                if await cur.fetchone() is None:
                    return None
            await db.execute(
                "UPDATE outbox SET not_before = 0, state = 'pending' WHERE subscription_id = ?",
                (sub_id,),
            )
            async with db.execute(self._SUB_SELECT + "WHERE s.id = ?", (sub_id,)) as cur:
                row = await cur.fetchone()
        return self._sub_from_row(row) if row else None

    async def pause_subscription(self, sub_id: int, reason: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE subscriptions SET paused_reason = ? WHERE id = ?", (reason, sub_id)
            )

    # --- the relay pipeline ---------------------------------------------------------

    async def _insert_seen(
        self,
        db: aiosqlite.Connection,
        resource_id: int,
        keys: Sequence[str],
        versions: Mapping[str, str] | None = None,
    ) -> set[str]:
        fresh: set[str] = set()
        now = time.time()
        unique = list(dict.fromkeys(keys))
        versions = versions or {}
        for chunk in chunks(unique):
            placeholders = ",".join(["(?, ?, ?, ?)"] * len(chunk))
            params: list[Any] = []
            for key in chunk:
                params += (resource_id, key, now, versions.get(key, ""))
            # execute_fetchall: one thread round trip, where a cursor costs three.
            rows = await db.execute_fetchall(
                "INSERT INTO seen (resource_id, key, first_seen, version) "  # noqa: S608
                f"VALUES {placeholders} "
                "ON CONFLICT DO NOTHING RETURNING key",
                params,
            )
            fresh.update(row[0] for row in rows)
        return fresh

    async def _insert_outbox(
        self, db: aiosqlite.Connection, rows: Sequence[NewOutboxRow]
    ) -> list[OutboxItem]:
        items: list[OutboxItem] = []
        now = time.time()
        by_key = {(r.channel_id, r.post_uid): r for r in rows}
        for chunk in chunks(list(by_key.values())):
            values = ",".join(["(?, ?, ?, ?, ?)"] * len(chunk))
            params: list[Any] = []
            for r in chunk:
                params += (
                    r.channel_id,
                    r.subscription_id,
                    r.post_uid,
                    json_encoder.encode(r.message).decode(),
                    now,
                )
            # Only placeholders are interpolated; every value is a bound parameter.
            inserted = await db.execute_fetchall(
                "INSERT INTO outbox (channel_id, subscription_id, post_uid, payload, created_at) "  # noqa: S608
                f"SELECT * FROM (VALUES {values}) AS v WHERE NOT EXISTS "
                "(SELECT 1 FROM deliveries d WHERE d.channel_id = v.column1 "
                "AND d.post_uid = v.column3) ON CONFLICT DO NOTHING "
                "RETURNING id, channel_id, post_uid",
                params,
            )
            for row in inserted:
                new = by_key[(int(row[1]), row[2])]
                items.append(
                    OutboxItem(
                        id=int(row[0]),
                        channel_id=new.channel_id,
                        channel=self._channel(new.channel_id),
                        subscription_id=new.subscription_id,
                        post_uid=new.post_uid,
                        message=new.message,
                        state="pending",
                        attempts=0,
                        not_before=0.0,
                    )
                )
        queued = {(i.channel_id, i.post_uid) for i in items}
        prints = [
            (r.channel_id, r.fingerprint, now)
            for r in by_key.values()
            if r.fingerprint and (r.channel_id, r.post_uid) in queued
        ]
        if prints:
            await db.executemany(
                "INSERT INTO mirror_prints (channel_id, fingerprint, at) VALUES (?, ?, ?) "
                "ON CONFLICT DO UPDATE SET at = excluded.at",
                prints,
            )
        items.sort(key=lambda item: item.id)
        return items

    async def admit(
        self,
        resource_id: int,
        keys: Sequence[str],
        build: Callable[[set[str]], list[NewOutboxRow]],
        versions: Mapping[str, str] | None = None,
    ) -> list[OutboxItem]:
        if not keys:
            return []
        # Group commit: admits that queue up meanwhile share one transaction and two
        # thread round trips (bot/store/sqlite_batch.py); same statements as above.
        inserted = await self._admits.admit(self.db, resource_id, keys, build, versions)
        return [
            OutboxItem(
                id=item_id,
                channel_id=new.channel_id,
                channel=self._channel(new.channel_id),
                subscription_id=new.subscription_id,
                post_uid=new.post_uid,
                message=new.message,
                state="pending",
                attempts=0,
                not_before=0.0,
            )
            for item_id, new in inserted
        ]

    async def edited(
        self, resource_id: int, versions: Mapping[str, str]
    ) -> list[tuple[str, list[tuple[ChannelRef, str]]]]:
        keys = list(versions)
        changed: list[str] = []
        out: list[tuple[str, list[tuple[ChannelRef, str]]]] = []
        async with self._transaction() as db:
            for chunk in chunks(keys):
                marks = ",".join("?" * len(chunk))
                async with db.execute(
                    f"SELECT key, version FROM seen WHERE resource_id = ? AND key IN ({marks})",  # noqa: S608
                    [resource_id, *chunk],
                ) as cur:
                    for key, old in await cur.fetchall():
                        if old != versions[key]:
                            await db.execute(
                                "UPDATE seen SET version = ? WHERE resource_id = ? AND key = ?",
                                (versions[key], resource_id, key),
                            )
                            if old:  # '' = admitted before versions were known: no edit
                                changed.append(key)
            for key in changed:
                # A message that carried a digest of several posts is left alone.
                async with db.execute(
                    "SELECT d.channel_id, d.message_ref FROM deliveries d WHERE d.post_uid = ? "
                    "AND (SELECT count(*) FROM deliveries o WHERE o.channel_id = d.channel_id "
                    "AND o.message_ref = d.message_ref) = 1",
                    (key,),
                ) as cur:
                    refs = [(self._channel(int(r[0])), r[1]) for r in await cur.fetchall()]
                if refs:
                    out.append((key, refs))
        return out

    async def mirror_prints(self, channel_ids: Sequence[int], since: float) -> set[tuple[int, str]]:
        found: set[tuple[int, str]] = set()
        for chunk in chunks(list(channel_ids)):
            marks = ",".join("?" * len(chunk))
            async with self.db.execute(
                "SELECT channel_id, fingerprint FROM mirror_prints "  # noqa: S608
                f"WHERE at >= ? AND channel_id IN ({marks})",
                [since, *chunk],
            ) as cur:
                found.update((int(r[0]), r[1]) for r in await cur.fetchall())
        return found

    async def set_cursor(self, resource_id: int, cursor: str | None) -> None:
        await self._writes.run(
            self.db,
            lambda conn: conn.execute(
                "UPDATE resources SET cursor = ? WHERE id = ?", (cursor, resource_id)
            ),
        )

    async def pending_outbox(self) -> list[OutboxItem]:
        async with self.db.execute(
            "SELECT id, channel_id, subscription_id, post_uid, payload, state, attempts, "
            "not_before, digest_key FROM outbox ORDER BY id"
        ) as cur:
            return [
                OutboxItem(
                    id=int(r[0]),
                    channel_id=int(r[1]),
                    channel=self._channels[int(r[1])],
                    subscription_id=int(r[2]),
                    post_uid=r[3],
                    message=message_decoder.decode(r[4]),
                    state=r[5],
                    attempts=int(r[6]),
                    not_before=float(r[7]),
                    digest_key=r[8],
                )
                for r in await cur.fetchall()
            ]

    async def mark_sending(self, ids: Sequence[int], digest_key: str = "") -> None:
        def write(conn: sqlite3.Connection) -> None:
            for chunk in chunks(ids):
                marks = ",".join("?" * len(chunk))
                conn.execute(
                    "UPDATE outbox SET state = 'sending', attempts = attempts + 1, "  # noqa: S608
                    f"digest_key = ? WHERE id IN ({marks})",
                    [digest_key, *chunk],
                )

        await self._urgent_writes.run(self.db, write)

    async def record_deliveries(self, delivered: Sequence[tuple[OutboxItem, str]]) -> None:
        now = time.time()
        rows = [(i.channel_id, i.post_uid, ref, i.subscription_id, now) for i, ref in delivered]
        ids = [(i.id,) for i, _ in delivered]

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO deliveries (channel_id, post_uid, message_ref, subscription_id, "
                "delivered_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                rows,
            )
            conn.executemany("DELETE FROM outbox WHERE id = ?", ids)

        await self._urgent_writes.run(self.db, write)

    async def defer(self, item_id: int, not_before: float, error: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE outbox SET state = 'pending', not_before = ?, last_error = ? WHERE id = ?",
                (not_before, error[:500], item_id),
            )

    async def outbox_depth(self) -> int:
        async with self.db.execute("SELECT count(*) FROM outbox") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def delivery_for(self, channel: ChannelRef, post_uid: str) -> str | None:
        """The chat message that carried `post_uid` in `channel`, if it was delivered."""
        channel_id = self._known_channel(channel)
        if channel_id is None:
            return None
        async with self.db.execute(
            "SELECT message_ref FROM deliveries WHERE channel_id = ? AND post_uid = ?",
            (channel_id, post_uid),
        ) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else None


class DuplicateSubscription(Exception):
    """The channel already follows this resource."""

    def __init__(self, existing_id: int) -> None:
        super().__init__(f"already followed as #{existing_id}")
        self.existing_id = existing_id
