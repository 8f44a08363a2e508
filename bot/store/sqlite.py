"""SQLite backend: aiosqlite, WAL, versioned migrations, one file for all state.

One connection serves the whole process; write transactions are serialised by a
lock so a transaction never interleaves with another coroutine's statements.
aiosqlite pays a thread hop per await, so hot paths use one multi-row statement
per poll rather than one per key.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite
import msgspec

from bot.model import ChannelRef, Filters, RichMessage, Subscription, Target, TargetKind
from bot.protocols import Draft, DraftImage
from bot.store.base import (
    HealthDay,
    HealthHost,
    HealthMinute,
    NewOutboxRow,
    OutboxItem,
    Postback,
    PostTarget,
    Retraction,
    StoredNotice,
    StoredOutage,
    StoredResource,
)
from bot.store.sqlite_batch import AdmitBatcher, OpBatcher

MIRROR_PRINT_TTL_S = 7 * 24 * 3600
HEALTH_DAYS_KEPT = 400  # per-day health rows are few: a year of history costs nothing
_CHUNK = 400  # rows per multi-row statement, well under SQLite's variable limit
_encoder = msgspec.json.Encoder()
_message_decoder = msgspec.json.Decoder(RichMessage)
_filters_decoder = msgspec.json.Decoder(Filters)


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("bot.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(found)


def _chunks(rows: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


class SqliteStore:
    def __init__(self, path: str) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._write_lock = PriorityLock()
        # Group commit for the hot write paths (see bot/store/sqlite_batch.py).
        self._admits = AdmitBatcher(lambda: self._write_lock.hold())
        self._writes = OpBatcher(lambda: self._write_lock.hold())
        self._urgent_writes = OpBatcher(lambda: self._write_lock.hold(urgent=True))
        self._channels: dict[int, ChannelRef] = {}
        self._new_channels: dict[int, ChannelRef] = {}  # cached only once committed

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        await self.db.execute("PRAGMA journal_mode=WAL")
        await self.db.execute("PRAGMA synchronous=NORMAL")
        await self.db.execute("PRAGMA foreign_keys=ON")
        await self.db.execute("PRAGMA busy_timeout=5000")
        await self._migrate()
        async with self.db.execute("SELECT id, platform, native_id, name FROM channels") as cur:
            async for row in cur:
                self._channels[row[0]] = ChannelRef(row[1], row[2], row[3])

    async def _migrate(self) -> None:
        async with self.db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        current = int(row[0]) if row else 0
        for version, script in _migrations():
            if version <= current:
                continue
            # executescript commits; the version bump is part of the same script.
            await self.db.executescript(
                f"BEGIN;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;"
            )

    async def schema_version(self) -> int:
        async with self.db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @asynccontextmanager
    async def _transaction(self, *, urgent: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock.hold(urgent=urgent):
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self._new_channels.clear()
                await self.db.execute("ROLLBACK")
                raise
            await self.db.execute("COMMIT")
            self._channels.update(self._new_channels)
            self._new_channels.clear()

    def _channel(self, channel_id: int) -> ChannelRef:
        return self._channels.get(channel_id) or self._new_channels[channel_id]

    # --- channels and subscriptions -------------------------------------------------

    def _known_channel(self, channel: ChannelRef) -> int | None:
        """The row id of a channel seen before (every channel is cached), or None."""
        for cid, ref in (*self._channels.items(), *self._new_channels.items()):
            if ref.platform == channel.platform and ref.native_id == channel.native_id:
                return cid
        return None

    async def _ensure_channel(self, db: aiosqlite.Connection, channel: ChannelRef) -> int:
        known = self._known_channel(channel)
        if known is not None:
            return known
        async with db.execute(
            "INSERT INTO channels (platform, native_id, name) VALUES (?, ?, ?) "
            "ON CONFLICT (platform, native_id) DO UPDATE SET name = excluded.name RETURNING id",
            (channel.platform, channel.native_id, channel.name),
        ) as cur:
            row = await cur.fetchone()
        assert row is not None
        self._new_channels[int(row[0])] = channel
        return int(row[0])

    async def ensure_channel(self, channel: ChannelRef) -> int:
        async with self._transaction() as db:
            return await self._ensure_channel(db, channel)

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
                    _encoder.encode(filters).decode(),
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
        timestamp, which at 100,000 subscriptions is most of their memory. All of
        them are immutable, so sharing is invisible to callers.
        """
        key, display = row[4], row[5]
        target = Target(
            sys.intern(row[2]), TargetKind(row[3]), key, key if display == key else display
        )
        filters: Filters | None = None
        created_at: datetime | None = None
        created_by: str = row[8]
        if memo is not None:
            filters = memo.get(("f", row[6]))
            created_by = memo.setdefault(("b", row[8]), row[8])
            created_at = memo.get(("t", row[9]))
        if filters is None:
            filters = _filters_decoder.decode(row[6])
            if memo is not None:
                memo[("f", row[6])] = filters
        if created_at is None:
            created_at = datetime.fromisoformat(row[9])
            if memo is not None:
                memo[("t", row[9])] = created_at
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

    async def load_followers(self) -> list[tuple[StoredResource, Subscription, int]]:
        out: list[tuple[StoredResource, Subscription, int]] = []
        memo: dict[Any, Any] = {}
        async with self.db.execute(
            self._SUB_SELECT.replace("SELECT ", "SELECT r.id, r.cursor, ", 1)
            + "WHERE s.paused_reason = '' ORDER BY s.id"
        ) as cur:
            # In chunks: the raw rows are several times the size of what is kept,
            # and freed rows interleaved with kept objects would stay in RSS.
            while rows := await cur.fetchmany(512):
                for row in rows:
                    sub = self._sub_from_row(row[2:], memo)
                    channel_id = memo.setdefault(("c", row[3]), int(row[3]))
                    out.append((StoredResource(int(row[0]), sub.target, row[1]), sub, channel_id))
                del rows
        # The bulk read filled SQLite's page cache (up to 2 MiB) with pages that the
        # running bot rarely reads again; give that memory back.
        await self.db.execute("PRAGMA shrink_memory")
        return out

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
        for chunk in _chunks(unique):
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
        for chunk in _chunks(list(by_key.values())):
            values = ",".join(["(?, ?, ?, ?, ?)"] * len(chunk))
            params: list[Any] = []
            for r in chunk:
                params += (
                    r.channel_id,
                    r.subscription_id,
                    r.post_uid,
                    _encoder.encode(r.message).decode(),
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
            for chunk in _chunks(keys):
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
        for chunk in _chunks(list(channel_ids)):
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
                    message=_message_decoder.decode(r[4]),
                    state=r[5],
                    attempts=int(r[6]),
                    not_before=float(r[7]),
                    digest_key=r[8],
                )
                for r in await cur.fetchall()
            ]

    async def mark_sending(self, ids: Sequence[int], digest_key: str = "") -> None:
        def write(conn: sqlite3.Connection) -> None:
            for chunk in _chunks(ids):
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

    # --- health ---------------------------------------------------------------------

    async def save_health(
        self, minutes: Sequence[HealthMinute], hosts: Sequence[HealthHost]
    ) -> None:
        async with self._transaction() as db:
            await db.executemany(
                "INSERT INTO health_minutes (network, host, minute, outcome, count, latency_sum) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (network, host, minute, outcome) DO UPDATE "
                "SET count = count + excluded.count, "
                "latency_sum = latency_sum + excluded.latency_sum",
                [(m.network, m.host, m.minute, m.outcome, m.count, m.latency_sum) for m in minutes],
            )
            await db.executemany(
                "INSERT OR REPLACE INTO health_hosts (network, host, last_outcome, last_status, "
                "last_detail, last_ok_at, last_failure_at, consecutive_failures) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        h.network,
                        h.host,
                        h.last_outcome,
                        h.last_status,
                        h.last_detail,
                        h.last_ok_at,
                        h.last_failure_at,
                        h.consecutive_failures,
                    )
                    for h in hosts
                ],
            )
            cutoff = int(time.time() // 60) - 31 * 24 * 60
            await db.execute("DELETE FROM health_minutes WHERE minute < ?", (cutoff,))
            await db.execute(
                "DELETE FROM mirror_prints WHERE at < ?", (time.time() - MIRROR_PRINT_TTL_S,)
            )

    async def load_health_hosts(self) -> list[HealthHost]:
        async with self.db.execute(
            "SELECT network, host, last_outcome, last_status, last_detail, last_ok_at, "
            "last_failure_at, consecutive_failures FROM health_hosts"
        ) as cur:
            return [HealthHost(*row) for row in await cur.fetchall()]

    async def health_minutes(self, since_minute: int) -> list[HealthMinute]:
        async with self.db.execute(
            "SELECT network, host, minute, outcome, count, latency_sum FROM health_minutes "
            "WHERE minute >= ? ORDER BY minute",
            (since_minute,),
        ) as cur:
            return [HealthMinute(*row) for row in await cur.fetchall()]

    # --- outages --------------------------------------------------------------------

    async def open_outage(self, network: str, host: str, started_at: float, detail: str) -> int:
        async with (
            self._transaction() as db,
            db.execute(
                "INSERT INTO outages (network, host, started_at, detail) VALUES (?, ?, ?, ?) "
                "RETURNING id",
                (network, host, started_at, detail[:500]),
            ) as cur,
        ):
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def add_outage_notice(
        self, outage_id: int, channel_id: int, message_ref: str, affected: int
    ) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT OR REPLACE INTO outage_messages (outage_id, channel_id, message_ref, "
                "affected) VALUES (?, ?, ?, ?)",
                (outage_id, channel_id, message_ref, affected),
            )

    async def close_outage(self, outage_id: int, ended_at: float, caught_up: int) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE outages SET ended_at = ?, caught_up = ? WHERE id = ?",
                (ended_at, caught_up, outage_id),
            )

    async def _outages(self, where: str, params: tuple[int, ...] = ()) -> list[StoredOutage]:
        # `where` is one of two literals below, never user input.
        async with self.db.execute(
            "SELECT id, network, host, started_at, ended_at, detail, caught_up FROM outages "  # noqa: S608
            + where,
            params,
        ) as cur:
            rows = await cur.fetchall()
        outages = []
        for row in rows:
            async with self.db.execute(
                "SELECT channel_id, message_ref, affected FROM outage_messages WHERE outage_id = ?",
                (row[0],),
            ) as cur:
                notices = tuple(
                    StoredNotice(int(n[0]), self._channels[int(n[0])], n[1], int(n[2]))
                    for n in await cur.fetchall()
                    if int(n[0]) in self._channels
                )
            outages.append(
                StoredOutage(
                    id=int(row[0]),
                    network=row[1],
                    host=row[2],
                    started_at=float(row[3]),
                    ended_at=row[4],
                    detail=row[5],
                    caught_up=int(row[6]),
                    notices=notices,
                )
            )
        return outages

    async def load_open_outages(self) -> list[StoredOutage]:
        return await self._outages("WHERE ended_at IS NULL ORDER BY id")

    async def recent_outages(self, limit: int) -> list[StoredOutage]:
        return await self._outages("ORDER BY id DESC LIMIT ?", (limit,))

    # --- post-back --------------------------------------------------------------------

    _TARGET_COLUMNS = frozenset(
        {"state", "attempts", "native_id", "url", "error", "not_before", "parts"}
    )

    async def create_postback(
        self,
        channel: ChannelRef,
        author: str,
        draft: Draft,
        networks: Sequence[str],
        state: str,
        *,
        thread: bool = False,
    ) -> Postback:
        now = time.time()
        async with self._transaction() as db:
            channel_id = await self._ensure_channel(db, channel)
            async with db.execute(
                "INSERT INTO postbacks (channel_id, author, text, reply_to, quote_of, "
                "content_warning, state, created_at, thread, images) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    channel_id,
                    author,
                    draft.text,
                    draft.reply_to,
                    draft.quote_of,
                    draft.content_warning,
                    state,
                    now,
                    int(thread),
                    _images_json(draft.images),
                ),
            ) as cur:
                row = await cur.fetchone()
            assert row is not None
            postback_id = int(row[0])
            await db.executemany(
                "INSERT INTO postback_targets (postback_id, network, position) VALUES (?, ?, ?)",
                [(postback_id, network, n) for n, network in enumerate(networks)],
            )
        found = await self.get_postback(postback_id)
        assert found is not None
        return found

    _POSTBACK_SELECT = (
        "SELECT id, channel_id, author, text, reply_to, quote_of, content_warning, state, "
        "created_at, decided_by, decided_at, request_ref, thread, images FROM postbacks "
    )

    async def _postbacks(self, where: str, params: tuple[object, ...]) -> list[Postback]:
        async with self.db.execute(self._POSTBACK_SELECT + where, params) as cur:
            rows = await cur.fetchall()
        found = []
        for r in rows:
            async with self.db.execute(
                "SELECT network, state, attempts, native_id, url, error, not_before, parts "
                "FROM postback_targets WHERE postback_id = ? ORDER BY position, network",
                (r[0],),
            ) as cur:
                targets = tuple(
                    PostTarget(
                        t[0],
                        t[1],
                        t[2],
                        t[3],
                        t[4],
                        t[5],
                        t[6],
                        tuple(filter(None, t[7].split("\n"))),
                    )
                    for t in await cur.fetchall()
                )
            found.append(
                Postback(
                    id=int(r[0]),
                    channel_id=int(r[1]),
                    channel=self._channel(int(r[1])),
                    author=r[2],
                    draft=Draft(r[3], r[4], r[5], r[6], _images_from(r[13])),
                    state=r[7],
                    created_at=float(r[8]),
                    decided_by=r[9],
                    decided_at=r[10],
                    request_ref=r[11],
                    targets=targets,
                    thread=bool(r[12]),
                )
            )
        return found

    async def get_postback(self, postback_id: int) -> Postback | None:
        found = await self._postbacks("WHERE id = ?", (postback_id,))
        return found[0] if found else None

    async def decide_postback(
        self, postback_id: int, state: str, by: str, expected: str
    ) -> Postback | None:
        async with (
            self._transaction() as db,
            db.execute(
                "UPDATE postbacks SET state = ?, decided_by = ?, decided_at = ? "
                "WHERE id = ? AND state = ? RETURNING id",
                (state, by, time.time(), postback_id, expected),
            ) as cur,
        ):
            changed = await cur.fetchone()
        return await self.get_postback(postback_id) if changed else None

    async def set_request_ref(self, postback_id: int, message_ref: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE postbacks SET request_ref = ? WHERE id = ?", (message_ref, postback_id)
            )

    async def update_target(self, postback_id: int, network: str, **changes: object) -> None:
        unknown = set(changes) - self._TARGET_COLUMNS
        if unknown:
            raise ValueError(f"unknown target columns {sorted(unknown)}")
        sets = ", ".join(f"{column} = ?" for column in changes)
        async with self._transaction() as db:
            await db.execute(
                f"UPDATE postback_targets SET {sets} WHERE postback_id = ? AND network = ?",  # noqa: S608
                (*changes.values(), postback_id, network),
            )

    async def add_target(self, postback_id: int, network: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO postback_targets (postback_id, network, position) "
                "SELECT ?1, ?2, coalesce(max(position), -1) + 1 FROM postback_targets "
                "WHERE postback_id = ?1 ON CONFLICT DO NOTHING",
                (postback_id, network),
            )

    async def postbacks_to_send(self) -> list[Postback]:
        return await self._postbacks(
            "WHERE state = 'approved' AND EXISTS (SELECT 1 FROM postback_targets t "
            "WHERE t.postback_id = postbacks.id AND t.state = 'pending') ORDER BY id",
            (),
        )

    async def last_postback(self, channel: ChannelRef, author: str) -> Postback | None:
        channel_id = self._known_channel(channel)
        if channel_id is None:
            return None
        found = await self._postbacks(
            "WHERE channel_id = ? AND author = ? AND state = 'approved' ORDER BY id DESC LIMIT 1",
            (channel_id, author),
        )
        return found[0] if found else None

    async def postbacks_since(self, author: str, since: float) -> int:
        async with self.db.execute(
            "SELECT count(*) FROM postbacks WHERE author = ? AND created_at >= ?", (author, since)
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    # --- upstream deletes and threads ------------------------------------------------

    async def retract(
        self, uids: Sequence[str], *, known_only: bool = False, held: Collection[int] = ()
    ) -> list[Retraction]:
        unique = list(dict.fromkeys(uids))
        found: list[Retraction] = []
        if not unique:
            return found
        now = time.time()
        async with self._transaction() as db:
            for chunk in _chunks(unique):
                marks = ",".join("?" * len(chunk))
                if known_only:
                    which = f"SELECT post_uid FROM tombstones WHERE post_uid IN ({marks})"  # noqa: S608
                else:
                    await db.executemany(
                        "INSERT INTO tombstones (post_uid, at) VALUES (?, ?) "
                        "ON CONFLICT DO NOTHING",
                        [(uid, now) for uid in chunk],
                    )
                    # Rows a sender holds in memory stay: deleting one would let SQLite
                    # give its id to a new row while the sender still acts on the old.
                    waiting = await db.execute_fetchall(
                        f"SELECT id FROM outbox WHERE state = 'pending' AND post_uid IN ({marks})",  # noqa: S608
                        chunk,
                    )
                    await db.executemany(
                        "DELETE FROM outbox WHERE id = ?",
                        [(row[0],) for row in waiting if row[0] not in held],
                    )
                    which = marks
                # A message that carried a digest of several posts is left alone.
                rows = await db.execute_fetchall(
                    "INSERT INTO retractions (channel_id, post_uid, message_ref) "  # noqa: S608
                    "SELECT d.channel_id, d.post_uid, d.message_ref FROM deliveries d "
                    f"WHERE d.post_uid IN ({which}) AND (SELECT count(*) FROM deliveries o "
                    "WHERE o.channel_id = d.channel_id AND o.message_ref = d.message_ref) = 1 "
                    "ON CONFLICT DO NOTHING RETURNING channel_id, post_uid, message_ref",
                    chunk,
                )
                found += [Retraction(int(r[0]), self._channel(int(r[0])), r[1], r[2]) for r in rows]
        return found

    async def pending_retractions(self) -> list[Retraction]:
        rows = await self.db.execute_fetchall(
            "SELECT channel_id, post_uid, message_ref, attempts FROM retractions "
            "WHERE state = 'pending'"
        )
        return [
            Retraction(int(r[0]), self._channel(int(r[0])), r[1], r[2], int(r[3])) for r in rows
        ]

    async def settle_retraction(
        self, channel_id: int, post_uid: str, *, done: bool, error: str = ""
    ) -> None:
        async with self._transaction(urgent=True) as db:
            await db.execute(
                "UPDATE retractions SET state = ?, attempts = attempts + 1, last_error = ? "
                "WHERE channel_id = ? AND post_uid = ?",
                ("done" if done else "pending", error[:500], channel_id, post_uid),
            )

    async def thread_ref(self, channel_id: int, post_uid: str) -> str | None:
        rows = await self.db.execute_fetchall(
            "SELECT message_ref FROM deliveries d WHERE channel_id = ? AND post_uid = ? "
            "AND NOT EXISTS (SELECT 1 FROM retractions r "
            "WHERE r.channel_id = d.channel_id AND r.post_uid = d.post_uid)",
            (channel_id, post_uid),
        )
        for row in rows:
            return str(row[0])
        return None

    async def save_installation(
        self, platform: str, enterprise_id: str, team_id: str, data: Mapping[str, object]
    ) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO installations (platform, enterprise_id, team_id, data, installed_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (platform, enterprise_id, team_id)"
                " DO UPDATE SET data = excluded.data, installed_at = excluded.installed_at",
                (platform, enterprise_id, team_id, _encoder.encode(dict(data)), time.time()),
            )

    async def find_installation(
        self, platform: str, enterprise_id: str | None, team_id: str
    ) -> dict[str, object] | None:
        async with self.db.execute(
            "SELECT data FROM installations WHERE platform = ? AND team_id = ?"
            " AND (? IS NULL OR enterprise_id = ?) ORDER BY installed_at DESC LIMIT 1",
            (platform, team_id, enterprise_id, enterprise_id),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        data = msgspec.json.decode(row[0])
        return data if isinstance(data, dict) else None

    async def delete_installation(self, platform: str, enterprise_id: str, team_id: str) -> bool:
        async with self._transaction() as db:
            cur = await db.execute(
                "DELETE FROM installations"
                " WHERE platform = ? AND enterprise_id = ? AND team_id = ?",
                (platform, enterprise_id, team_id),
            )
            return cur.rowcount > 0

    async def plugin_state_get(self, namespace: str, key: str) -> str | None:
        async with self.db.execute(
            "SELECT value FROM plugin_state WHERE namespace = ? AND key = ?", (namespace, key)
        ) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def plugin_state_put(self, namespace: str, key: str, value: str | None) -> None:
        async with self._transaction() as db:
            if value is None:
                await db.execute(
                    "DELETE FROM plugin_state WHERE namespace = ? AND key = ?", (namespace, key)
                )
            else:
                await db.execute(
                    "INSERT INTO plugin_state (namespace, key, value, updated_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (namespace, key) DO UPDATE "
                    "SET value = excluded.value, updated_at = excluded.updated_at",
                    (namespace, key, value, time.time()),
                )

    async def plugin_state_prune(self, namespace: str, before: float) -> int:
        async with self._transaction() as db:
            cur = await db.execute(
                "DELETE FROM plugin_state WHERE namespace = ? AND updated_at < ?",
                (namespace, before),
            )
            return cur.rowcount

    # --- health per day (the status page's 30 days) ---------------------------------

    async def save_health_days(self, days: Sequence[HealthDay]) -> None:
        async with self._transaction() as db:
            await db.executemany(
                "INSERT INTO health_days (network, day, outcome, count, latency_sum) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (network, day, outcome) DO UPDATE "
                "SET count = count + excluded.count, "
                "latency_sum = latency_sum + excluded.latency_sum",
                [(d.network, d.day, d.outcome, d.count, d.latency_sum) for d in days],
            )
            cutoff = int(time.time() // 86400) - HEALTH_DAYS_KEPT
            await db.execute("DELETE FROM health_days WHERE day < ?", (cutoff,))

    async def health_days(self, since_day: int) -> list[HealthDay]:
        async with self.db.execute(
            "SELECT network, day, outcome, count, latency_sum FROM health_days "
            "WHERE day >= ? ORDER BY day",
            (since_day,),
        ) as cur:
            return [HealthDay(*row) for row in await cur.fetchall()]


class PriorityLock:
    """A write lock where delivery goes first.

    Under load hundreds of polls queue their admit transactions; with a plain FIFO
    lock, recording a delivery waited behind all of them and fetching starved the
    chats (measured). Urgent holders are served before the others, in order.
    """

    def __init__(self) -> None:
        self._held = False
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = 0

    @asynccontextmanager
    async def hold(self, *, urgent: bool = False) -> AsyncIterator[None]:
        if self._held or self._waiting:
            self._seq += 1
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (0 if urgent else 1, self._seq, future))
            try:
                await future
            except BaseException:
                if future.done() and not future.cancelled():
                    self._release()  # handed over, but we are gone: pass it on
                else:
                    self._waiting = [w for w in self._waiting if w[2] is not future]
                    heapq.heapify(self._waiting)
                raise
        else:
            self._held = True
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            _, _, future = heapq.heappop(self._waiting)
            if not future.done():
                future.set_result(None)  # ownership passes on; _held stays True
                return
        self._held = False


class DuplicateSubscription(Exception):
    """The channel already follows this resource."""

    def __init__(self, existing_id: int) -> None:
        super().__init__(f"already followed as #{existing_id}")
        self.existing_id = existing_id


def _images_json(images: Sequence[DraftImage]) -> str:
    """A post-back's image links and alt texts; the bytes are downloaded again."""
    if not images:
        return ""
    return json.dumps([{"url": i.url, "alt": i.alt} for i in images], ensure_ascii=False)


def _images_from(value: str) -> tuple[DraftImage, ...]:
    if not value:
        return ()
    return tuple(DraftImage(str(i["url"]), str(i.get("alt", ""))) for i in json.loads(value))
