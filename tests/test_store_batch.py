"""Group commit in the SQLite store: concurrent writers share transactions and still
see exactly what they would have seen one after the other."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.model import ChannelRef, Filters, RichMessage, Target, TargetKind
from bot.store.base import NewOutboxRow
from bot.store.sqlite import SqliteStore
from bot.store.sqlite_batch import on_thread
from tests.test_store import follow, no_backlog, resource_id, rows_for

GENERAL = ChannelRef("test", "general", "general")


def feed(i: int) -> Target:
    return Target("feeds", TargetKind.ACCOUNT, f"https://{i}.example/feed.xml", str(i))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(str(tmp_path / "starling.db"))
    await opened.open()
    yield opened
    await opened.close()


async def count_commits(store: SqliteStore) -> list[int]:
    """Every COMMIT the connection runs from now on (a statement trace on its thread)."""
    commits: list[int] = []

    def trace(conn: sqlite3.Connection) -> None:
        conn.set_trace_callback(
            lambda sql: commits.append(1) if sql.strip().upper() == "COMMIT" else None
        )

    await on_thread(store.db, trace)
    return commits


async def test_concurrent_admits_share_transactions_and_each_gets_its_rows(
    store: SqliteStore,
) -> None:
    followers = []
    for i in range(40):
        sub, cid = await follow(store, GENERAL, feed(i), baseline=["old"])
        followers.append((sub, cid, await resource_id(store, feed(i))))
    commits = await count_commits(store)

    results = await asyncio.gather(
        *(
            store.admit(rid, ["old", f"new-{i}"], rows_for([(sub, cid)]))
            for i, (sub, cid, rid) in enumerate(followers)
        )
    )

    assert [[item.post_uid for item in items] for items in results] == [
        [f"new-{i}"] for i in range(40)
    ]
    assert all(item.channel == GENERAL for items in results for item in items)
    assert len(commits) < 10, "admits that queue up should be committed together"
    assert await store.outbox_depth() == 40


async def test_same_resource_twice_in_one_burst_is_admitted_once(store: SqliteStore) -> None:
    sub, cid = await follow(store)
    rid = await resource_id(store)
    build = rows_for([(sub, cid)])
    first, second = await asyncio.gather(
        store.admit(rid, ["a", "b"], build), store.admit(rid, ["b", "c"], build)
    )
    assert [i.post_uid for i in first] == ["a", "b"]
    assert [i.post_uid for i in second] == ["c"]


async def test_a_failing_build_fails_alone_and_its_keys_stay_new(store: SqliteStore) -> None:
    good_sub, good_cid = await follow(store, GENERAL, feed(1))
    bad_sub, bad_cid = await follow(store, GENERAL, feed(2))
    good_rid, bad_rid = await resource_id(store, feed(1)), await resource_id(store, feed(2))

    def broken(fresh: set[str]) -> list[NewOutboxRow]:
        raise ValueError("render bug")

    good, bad = await asyncio.gather(
        store.admit(good_rid, ["g"], rows_for([(good_sub, good_cid)])),
        store.admit(bad_rid, ["x"], broken),
        return_exceptions=True,
    )
    assert isinstance(good, list)
    assert [i.post_uid for i in good] == ["g"]
    assert isinstance(bad, ValueError)
    # Nothing of the failed admit stuck: the next poll sees "x" as new again.
    again = await store.admit(bad_rid, ["x"], rows_for([(bad_sub, bad_cid)]))
    assert [i.post_uid for i in again] == ["x"]


async def test_cancelling_a_waiting_admit_does_not_disturb_the_others(store: SqliteStore) -> None:
    followers = []
    for i in range(5):
        sub, cid = await follow(store, GENERAL, feed(i))
        followers.append((sub, cid, await resource_id(store, feed(i))))
    tasks = [
        asyncio.create_task(store.admit(rid, [f"k{i}"], rows_for([(sub, cid)])))
        for i, (sub, cid, rid) in enumerate(followers)
    ]
    await asyncio.sleep(0)
    tasks[0].cancel()  # the leader
    tasks[2].cancel()  # a follower
    done = await asyncio.gather(*tasks, return_exceptions=True)
    for i in (1, 3, 4):
        result = done[i]
        assert isinstance(result, list)
        assert [item.post_uid for item in result] == [f"k{i}"]
    # Whatever happened to the cancelled ones, a retry never queues a post twice.
    for i in (0, 2):
        sub, cid, rid = followers[i]
        await store.admit(rid, [f"k{i}"], rows_for([(sub, cid)]))
    assert await store.outbox_depth() <= 5


async def test_cursor_and_delivery_writes_are_batched_and_durable(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteStore(str(path))
    await store.open()
    sub, cid = await follow(store)
    rid = await resource_id(store)
    items = await store.admit(rid, ["p1", "p2"], rows_for([(sub, cid)]))
    await asyncio.gather(
        store.set_cursor(rid, "etag-1"),
        store.mark_sending([items[0].id]),
        store.record_deliveries([(items[0], "msg-1")]),
        store.create_subscription(
            GENERAL, feed(9), Filters(), 60.0, "bob", [], no_backlog, "etag-9"
        ),
    )
    await store.close()

    reopened = SqliteStore(str(path))
    await reopened.open()
    try:
        assert [s.id for s in await reopened.list_subscriptions()] == [sub.id, sub.id + 1]
        [resource] = [r for r in await reopened.active_resources() if r.id == rid]
        assert resource.cursor == "etag-1"
        assert [i.post_uid for i in await reopened.pending_outbox()] == ["p2"]
        assert await reopened.delivery_for(GENERAL, "p1") == "msg-1"
    finally:
        await reopened.close()


async def test_message_payload_round_trips(store: SqliteStore) -> None:
    sub, cid = await follow(store)
    rid = await resource_id(store)

    def build(fresh: set[str]) -> list[NewOutboxRow]:
        return [NewOutboxRow(cid, sub.id, "p", RichMessage(title="T", text="body"))]

    [item] = await store.admit(rid, ["p"], build)
    [pending] = await store.pending_outbox()
    assert pending.id == item.id
    assert pending.message == item.message
