"""Group commit for the SQLite store's hot write paths.

Why: aiosqlite runs every statement on its own thread, and each await that crosses
to it waits for a turn of the event loop. Under load (hundreds of polls in flight)
one `admit` took 4 such round trips while holding the write lock, so admits queued
for seconds (measured). Here the statements of a whole transaction run in one
function on aiosqlite's thread, and transactions that queue up while one is being
written are combined: one `BEGIN … COMMIT` for all of them, each inside its own
SAVEPOINT so one failing request fails alone, exactly as if it had run by itself.
Every caller returns only after the COMMIT that made its rows durable.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import aiosqlite
import msgspec

from bot.store.base import NewOutboxRow

T = TypeVar("T")
_CHUNK = 400  # rows per multi-row statement, well under SQLite's variable limit
_MAX_BATCH = 256  # requests per transaction: bounds how long one write holds the lock
_encoder = msgspec.json.Encoder()


def on_thread(db: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]) -> Awaitable[T]:
    """Run `fn(connection)` on aiosqlite's worker thread: one round trip for many statements.

    aiosqlite has no public API for this; `_execute` is the method all its own calls
    use (tested in tests/test_store_batch.py, so an aiosqlite change shows up there).
    """
    runner: Any = db
    return runner._execute(lambda: fn(runner._conn))  # type: ignore[no-any-return]


class _Request(Generic[T]):
    """One caller's transaction, queued until a leader writes it."""

    __slots__ = ("done", "error", "result", "wake")

    def __init__(self) -> None:
        self.wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None

    def finish(self, result: T | None, error: BaseException | None = None) -> None:
        self.done = True
        self.result = result
        self.error = error
        if not self.wake.done():
            self.wake.set_result(None)


class _Combiner(Generic[T]):
    """Leader/follower group commit: the caller that finds nobody writing becomes the
    leader and writes batches until its own request is done, then hands the lead to
    the oldest waiting caller. Others just wait for their request to be finished."""

    def __init__(self) -> None:
        self.queue: deque[_Request[T]] = deque()
        self._leading = False
        self._tasks: set[asyncio.Future[None]] = set()

    async def submit(self, request: _Request[T], write: Callable[[], Awaitable[None]]) -> T:
        self.queue.append(request)
        if self._leading:
            try:
                await request.wake
            except BaseException:
                self._abandon(request)
                raise
            if request.done:
                return self._outcome(request)
        else:
            self._leading = True
        try:
            while not request.done:
                # Shielded: a batch, once started, is written whole even if the caller
                # leading it is cancelled, so other callers' rows are never half-written.
                task = asyncio.ensure_future(write())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                await asyncio.shield(task)
        finally:
            self._hand_over()
        return self._outcome(request)

    def _abandon(self, request: _Request[T]) -> None:
        if request in self.queue:
            self.queue.remove(request)
        if request.wake.done() and not request.wake.cancelled() and not request.done:
            self._hand_over()  # we were asked to lead but are gone: pass it on

    def _hand_over(self) -> None:
        for waiting in self.queue:
            if not waiting.wake.done():
                waiting.wake.set_result(None)  # you lead now
                return
        self._leading = False

    @staticmethod
    def _outcome(request: _Request[T]) -> T:
        if request.error is not None:
            raise request.error
        return request.result  # type: ignore[return-value]


# --- plain write transactions (cursor, delivery bookkeeping) -------------------------


class _Op(_Request[Any]):
    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[sqlite3.Connection], Any]) -> None:
        super().__init__()
        self.fn = fn


class OpBatcher:
    """Short write transactions of many callers combined into one thread round trip."""

    def __init__(self, lock_hold: Callable[[], Any]) -> None:
        self._combiner: _Combiner[Any] = _Combiner()
        self._hold = lock_hold

    async def run(self, db: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        op = _Op(fn)
        result: T = await self._combiner.submit(op, lambda: self._write(db))
        return result

    async def _write(self, db: aiosqlite.Connection) -> None:
        queue = self._combiner.queue
        batch: list[_Op] = []
        while queue and len(batch) < _MAX_BATCH:
            op = queue.popleft()
            assert isinstance(op, _Op)
            batch.append(op)
        try:
            async with self._hold():
                outcomes = await on_thread(db, lambda conn: _run_ops(conn, batch))
        except BaseException as err:
            _requeue_or_fail(queue, batch, err)
            if not isinstance(err, Exception):
                raise
            return
        for op, (result, error) in zip(batch, outcomes, strict=True):
            op.finish(result, error)


def _run_ops(conn: sqlite3.Connection, batch: Sequence[_Op]) -> list[tuple[Any, Exception | None]]:
    outcomes: list[tuple[Any, Exception | None]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for op in batch:
            conn.execute("SAVEPOINT op")
            try:
                outcomes.append((op.fn(conn), None))
            except Exception as err:
                conn.execute("ROLLBACK TO op")
                outcomes.append((None, err))
            conn.execute("RELEASE op")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return outcomes


def _requeue_or_fail(queue: deque[Any], batch: Sequence[_Request[Any]], err: BaseException) -> None:
    """The batch's transaction rolled back: a cancelled leader leaves the others for the
    next leader (at the front, in order); a database error fails them all."""
    if isinstance(err, Exception):
        for request in batch:
            request.finish(None, err)
    else:
        queue.extendleft(reversed([r for r in batch if not r.done]))


# --- admit: dedupe keys, build rows on the event loop, queue them ---------------------


@dataclass(slots=True, eq=False)
class _Admit:
    resource_id: int
    keys: list[str]
    versions: Mapping[str, str]
    build: Callable[[set[str]], list[NewOutboxRow]]
    fresh: set[str] = field(default_factory=set)
    rows: list[NewOutboxRow] = field(default_factory=list)
    inserted: list[tuple[int, NewOutboxRow]] = field(default_factory=list)
    error: Exception | None = None


class _AdmitRequest(_Request[list[tuple[int, NewOutboxRow]]]):
    __slots__ = ("admit",)

    def __init__(self, admit: _Admit) -> None:
        super().__init__()
        self.admit = admit


class AdmitBatcher:
    """`admit` for many polls in two thread round trips per batch: dedupe all keys
    (BEGIN, seen inserts), build the rows of what is fresh on the event loop, then
    insert all outbox rows and COMMIT."""

    def __init__(self, lock_hold: Callable[[], Any]) -> None:
        self._combiner: _Combiner[list[tuple[int, NewOutboxRow]]] = _Combiner()
        self._hold = lock_hold

    async def admit(
        self,
        db: aiosqlite.Connection,
        resource_id: int,
        keys: Sequence[str],
        build: Callable[[set[str]], list[NewOutboxRow]],
        versions: Mapping[str, str] | None,
    ) -> list[tuple[int, NewOutboxRow]]:
        """The new outbox rows with their ids, in id order."""
        request = _AdmitRequest(
            _Admit(resource_id, list(dict.fromkeys(keys)), versions or {}, build)
        )
        return await self._combiner.submit(request, lambda: self._write(db))

    def _take(self) -> list[_AdmitRequest]:
        """Oldest first; one request per resource, so each sees the previous one's keys."""
        queue = self._combiner.queue
        batch: list[_AdmitRequest] = []
        resources: set[int] = set()
        kept: list[Any] = []
        while queue and len(batch) < _MAX_BATCH:
            request = queue.popleft()
            assert isinstance(request, _AdmitRequest)
            if request.admit.resource_id in resources:
                kept.append(request)
            else:
                resources.add(request.admit.resource_id)
                batch.append(request)
        queue.extendleft(reversed(kept))
        return batch

    async def _write(self, db: aiosqlite.Connection) -> None:
        batch = self._take()
        admits = [request.admit for request in batch]
        now = time.time()
        try:
            async with self._hold():
                if await on_thread(db, lambda conn: _dedupe_phase(conn, admits, now)):
                    try:
                        for admit in admits:
                            if admit.fresh and admit.error is None:
                                try:
                                    admit.rows = admit.build(admit.fresh)
                                except Exception as err:
                                    admit.error = err
                    except BaseException:
                        await on_thread(db, _rollback_if_open)
                        raise
                    await on_thread(db, lambda conn: _outbox_phase(conn, admits, now))
        except BaseException as err:
            _requeue_or_fail(self._combiner.queue, batch, err)
            if not isinstance(err, Exception):
                raise
            return
        for request, admit in zip(batch, admits, strict=True):
            request.finish(sorted(admit.inserted, key=lambda pair: pair[0]), admit.error)


def _rollback_if_open(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _dedupe_phase(conn: sqlite3.Connection, admits: Sequence[_Admit], now: float) -> bool:
    """BEGIN and insert every request's keys; True when the transaction stays open."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for admit in admits:  # reset: a batch may be retried after a rollback
            admit.fresh = set()
            admit.rows = []
            admit.error = None
            conn.execute("SAVEPOINT admit")
            try:
                admit.fresh = _insert_seen(conn, admit, now)
            except Exception as err:
                conn.execute("ROLLBACK TO admit")
                admit.fresh = set()
                admit.error = err
            conn.execute("RELEASE admit")
        if any(admit.fresh for admit in admits):
            return True
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return False


def _outbox_phase(conn: sqlite3.Connection, admits: Sequence[_Admit], now: float) -> None:
    """Insert every request's rows and COMMIT; a failed request's fresh keys are removed,
    which undoes its part exactly (no other request in the batch shares its resource)."""
    try:
        if not conn.in_transaction:
            raise sqlite3.OperationalError("the admit transaction was lost")
        for admit in admits:
            admit.inserted = []
            if admit.error is None and admit.rows:
                conn.execute("SAVEPOINT admit")
                try:
                    admit.inserted = _insert_outbox(conn, admit.rows, now)
                except Exception as err:
                    conn.execute("ROLLBACK TO admit")
                    admit.error = err
                conn.execute("RELEASE admit")
            if admit.error is not None and admit.fresh:
                _forget_seen(conn, admit.resource_id, sorted(admit.fresh))
                admit.fresh = set()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _chunks(rows: Sequence[T], size: int = _CHUNK) -> list[Sequence[T]]:
    return [rows[start : start + size] for start in range(0, len(rows), size)]


def _insert_seen(conn: sqlite3.Connection, admit: _Admit, now: float) -> set[str]:
    fresh: set[str] = set()
    versions = admit.versions
    for chunk in _chunks(admit.keys):
        placeholders = ",".join(["(?, ?, ?, ?)"] * len(chunk))
        params: list[Any] = []
        for key in chunk:
            params += (admit.resource_id, key, now, versions.get(key, ""))
        rows = conn.execute(
            "INSERT INTO seen (resource_id, key, first_seen, version) "  # noqa: S608
            f"VALUES {placeholders} "
            "ON CONFLICT DO NOTHING RETURNING key",
            params,
        ).fetchall()
        fresh.update(row[0] for row in rows)
    return fresh


def _forget_seen(conn: sqlite3.Connection, resource_id: int, keys: Sequence[str]) -> None:
    for chunk in _chunks(keys):
        marks = ",".join("?" * len(chunk))
        conn.execute(
            f"DELETE FROM seen WHERE resource_id = ? AND key IN ({marks})",  # noqa: S608
            [resource_id, *chunk],
        )


def _insert_outbox(
    conn: sqlite3.Connection, rows: Sequence[NewOutboxRow], now: float
) -> list[tuple[int, NewOutboxRow]]:
    """Same statements as `SqliteStore._insert_outbox`, run on the database thread."""
    inserted: list[tuple[int, NewOutboxRow]] = []
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
        found = conn.execute(
            "INSERT INTO outbox (channel_id, subscription_id, post_uid, payload, created_at) "  # noqa: S608
            f"SELECT * FROM (VALUES {values}) AS v WHERE NOT EXISTS "
            "(SELECT 1 FROM deliveries d WHERE d.channel_id = v.column1 "
            "AND d.post_uid = v.column3) ON CONFLICT DO NOTHING "
            "RETURNING id, channel_id, post_uid",
            params,
        ).fetchall()
        for row in found:
            inserted.append((int(row[0]), by_key[(int(row[1]), row[2])]))
    queued = {(r.channel_id, r.post_uid) for _, r in inserted}
    prints = [
        (r.channel_id, r.fingerprint, now)
        for r in by_key.values()
        if r.fingerprint and (r.channel_id, r.post_uid) in queued
    ]
    if prints:
        conn.executemany(
            "INSERT INTO mirror_prints (channel_id, fingerprint, at) VALUES (?, ?, ?) "
            "ON CONFLICT DO UPDATE SET at = excluded.at",
            prints,
        )
    return inserted
