"""SQLite backend, the shared part: connection, migrations, transactions, channels.

One connection serves the whole process; write transactions are serialised by a
lock so a transaction never interleaves with another coroutine's statements.
The rows of each area live in a module of their own (`sqlite_health`,
`sqlite_postback`, `sqlite_records`, and `sqlite` for subscriptions and the relay
pipeline); `SqliteStore` combines them.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite
import msgspec

from bot.model import ChannelRef, Filters, RichMessage
from bot.store.sqlite_batch import AdmitBatcher, OpBatcher

MIRROR_PRINT_TTL_S = 7 * 24 * 3600
# A tombstone only has to outlive repeated reports of one delete and sends racing it;
# `retractions` rows (kept) stop a message from being retracted twice after that.
TOMBSTONE_TTL_S = 30 * 24 * 3600
HEALTH_DAYS_KEPT = 400  # per-day health rows are few: a year of history costs nothing
_CHUNK = 400  # rows per multi-row statement, well under SQLite's variable limit
json_encoder = msgspec.json.Encoder()
message_decoder = msgspec.json.Decoder(RichMessage)
filters_decoder = msgspec.json.Decoder(Filters)


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("bot.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(found)


def chunks(rows: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    """`rows` in slices small enough for one multi-row statement."""
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


class SqliteCore:
    """The connection and what every area of the store shares (transactions, channels)."""

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

    # --- channels -------------------------------------------------------------------

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
