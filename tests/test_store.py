"""The SQLite store: schema, dedupe, the durable outbox and what survives a restart."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import closing
from pathlib import Path

import pytest

from bot.model import ChannelRef, Filters, RichMessage, Subscription, Target, TargetKind
from bot.store.base import HealthHost, HealthMinute, NewOutboxRow
from bot.store.sqlite import DuplicateSubscription, SqliteStore
from bot.store.sqlite_core import TOMBSTONE_TTL_S

MIGRATIONS = Path(__file__).resolve().parents[1] / "bot" / "store" / "migrations"

GENERAL = ChannelRef("test", "general", "general")
RANDOM = ChannelRef("test", "random", "random")
FEED_A = Target("feeds", TargetKind.ACCOUNT, "https://a.example/feed.xml", "A")
FEED_B = Target("feeds", TargetKind.ACCOUNT, "https://b.example/feed.xml", "B")


def no_backlog(sub: Subscription, channel_id: int) -> list[NewOutboxRow]:
    return []


def rows_for(
    followers: Sequence[tuple[Subscription, int]], uid: Callable[[str], str] = lambda k: k
) -> Callable[[set[str]], list[NewOutboxRow]]:
    """A `build` callback: one outbox row per new key per follower, as the relay makes them."""

    def build(fresh: set[str]) -> list[NewOutboxRow]:
        return [
            NewOutboxRow(channel_id, sub.id, uid(key), RichMessage(text=f"post {key}"))
            for key in sorted(fresh)
            for sub, channel_id in followers
        ]

    return build


async def open_at(path: Path) -> SqliteStore:
    store = SqliteStore(str(path))
    await store.open()
    return store


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "starling.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await open_at(db_path)
    yield opened
    await opened.close()


async def follow(
    store: SqliteStore,
    channel: ChannelRef = GENERAL,
    target: Target = FEED_A,
    baseline: Sequence[str] = (),
    filters: Filters = Filters(),  # noqa: B008 - frozen dataclass
) -> tuple[Subscription, int]:
    sub, items = await store.create_subscription(
        channel, target, filters, 300.0, "alice", list(baseline), no_backlog, None
    )
    assert items == []
    return sub, await store.ensure_channel(channel)


async def resource_id(store: SqliteStore, target: Target = FEED_A) -> int:
    found = await store.find_resource(target)
    assert found is not None
    return found.id


# --- schema and migrations ---------------------------------------------------------------


async def test_open_creates_schema_at_latest_version(store: SqliteStore, db_path: Path) -> None:
    migrations = sorted(p.name for p in MIGRATIONS.glob("*.sql"))
    assert migrations, "no migrations found"
    assert db_path.is_file()
    assert await store.schema_version() == len(migrations)
    with closing(sqlite3.connect(db_path)) as raw:
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
    assert {"channels", "resources", "subscriptions", "seen", "outbox", "deliveries"} <= tables


async def test_the_one_post_per_message_check_reads_an_index_not_the_channel(
    db_path: Path,
) -> None:
    """Edits and deletes ask whether a message carried one post; that must stay cheap
    in a channel with years of deliveries."""
    await (await open_at(db_path)).close()
    with closing(sqlite3.connect(db_path)) as raw:
        plan = " ".join(
            str(row[3])
            for row in raw.execute(
                "EXPLAIN QUERY PLAN SELECT count(*) FROM deliveries o "
                "WHERE o.channel_id = ? AND o.message_ref = ?",
                (1, "ts-1"),
            )
        )
    assert "deliveries_message" in plan, plan


async def test_reopen_keeps_data_and_does_not_rerun_migrations(db_path: Path) -> None:
    first = await open_at(db_path)
    sub, _ = await follow(first, filters=Filters(include=("python",), skip_replies=True))
    version = await first.schema_version()
    await first.close()

    # A re-run of the initial migration would fail on CREATE TABLE; reopening must not.
    second = await open_at(db_path)
    try:
        assert await second.schema_version() == version
        assert await second.list_subscriptions() == [sub]
    finally:
        await second.close()


async def test_wal_mode_is_on(store: SqliteStore, db_path: Path) -> None:
    with closing(sqlite3.connect(db_path)) as raw:
        mode = raw.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode.lower() == "wal"


# --- subscriptions and baselines ---------------------------------------------------------


async def test_new_resource_baseline_is_marked_seen(store: SqliteStore) -> None:
    sub, cid = await follow(store, baseline=["old-1", "old-2"])
    rid = await resource_id(store)
    assert await store.admit(rid, ["old-1", "old-2"], rows_for([(sub, cid)])) == []
    assert await store.pending_outbox() == []


async def test_existing_resource_baseline_does_not_touch_seen(store: SqliteStore) -> None:
    first, first_cid = await follow(store, GENERAL, baseline=["a"])
    # The second subscriber fetched later and saw "b" too, but "b" was never admitted
    # for the first subscriber: marking it seen now would lose it for #general.
    second, second_cid = await follow(store, RANDOM, baseline=["a", "b"])
    rid = await resource_id(store)

    items = await store.admit(rid, ["a", "b"], rows_for([(first, first_cid), (second, second_cid)]))

    assert sorted((i.channel.native_id, i.post_uid) for i in items) == [
        ("general", "b"),
        ("random", "b"),
    ]


async def test_duplicate_subscription_names_the_existing_id(store: SqliteStore) -> None:
    sub, _ = await follow(store)
    with pytest.raises(DuplicateSubscription) as err:
        await follow(store)
    assert err.value.existing_id == sub.id
    assert f"#{sub.id}" in str(err.value)
    assert [s.id for s in await store.list_subscriptions()] == [sub.id]


async def test_same_resource_in_two_channels_is_not_a_duplicate(store: SqliteStore) -> None:
    one, _ = await follow(store, GENERAL)
    two, _ = await follow(store, RANDOM)
    assert one.id != two.id
    assert (await store.find_resource(FEED_A)) is not None


async def test_list_subscriptions_filters_by_channel(store: SqliteStore) -> None:
    a, _ = await follow(store, GENERAL, FEED_A)
    b, _ = await follow(store, GENERAL, FEED_B)
    c, _ = await follow(store, RANDOM, FEED_A)
    assert [s.id for s in await store.list_subscriptions(GENERAL)] == [a.id, b.id]
    assert [s.id for s in await store.list_subscriptions(RANDOM)] == [c.id]
    assert [s.id for s in await store.list_subscriptions()] == [a.id, b.id, c.id]
    assert await store.list_subscriptions(ChannelRef("test", "empty")) == []


async def test_load_followers_returns_resource_subscription_and_channel_id(
    store: SqliteStore,
) -> None:
    a, general_id = await follow(store, GENERAL, FEED_A)
    b, random_id = await follow(store, RANDOM, FEED_B)
    await store.set_cursor(await resource_id(store, FEED_B), "etag-1")

    followers = [row async for chunk in store.load_followers() for row in chunk]

    assert [(r.target, s, cid) for r, s, cid in followers] == [
        (FEED_A, a, general_id),
        (FEED_B, b, random_id),
    ]
    assert [r.cursor for r, _, _ in followers] == [None, "etag-1"]
    assert general_id != random_id


async def test_load_followers_brings_each_resources_followers_together_across_chunks(
    store: SqliteStore,
) -> None:
    # More subscriptions than one chunk holds, each feed followed from two channels
    # that subscribed at different times: the app builds a resource's state from
    # consecutive rows, so a resource split apart would be polled twice.
    feeds = [
        Target("feeds", TargetKind.ACCOUNT, f"https://f{i}.example/feed.xml") for i in range(400)
    ]
    for channel in (GENERAL, RANDOM):
        for feed in feeds:
            await follow(store, channel, feed)

    chunks = [chunk async for chunk in store.load_followers()]
    rows = [row for chunk in chunks for row in chunk]

    assert len(chunks) > 1
    assert len(rows) == 800
    order = [stored.id for stored, _, _ in rows]
    runs = [rid for i, rid in enumerate(order) if i == 0 or order[i - 1] != rid]
    assert len(runs) == len(set(runs)) == 400
    assert {s.channel for stored, s, _ in rows if stored.target == feeds[7]} == {GENERAL, RANDOM}


async def test_paused_subscription_is_listed_but_not_polled(store: SqliteStore) -> None:
    sub, _ = await follow(store)
    await store.pause_subscription(sub.id, "channel deleted")
    assert [s.paused_reason for s in await store.list_subscriptions()] == ["channel deleted"]
    assert [chunk async for chunk in store.load_followers()] == []
    assert await store.active_resources() == []
    assert await store.subscriptions_for(await resource_id(store)) == []


async def test_backlog_rows_are_queued_with_the_subscription(store: SqliteStore) -> None:
    def backlog(sub: Subscription, channel_id: int) -> list[NewOutboxRow]:
        return [
            NewOutboxRow(channel_id, sub.id, f"feeds:{n}", RichMessage(text=str(n))) for n in (1, 2)
        ]

    sub, items = await store.create_subscription(
        GENERAL, FEED_A, Filters(), 300.0, "alice", ["feeds:1", "feeds:2"], backlog, None
    )
    assert [(i.post_uid, i.subscription_id, i.state) for i in items] == [
        ("feeds:1", sub.id, "pending"),
        ("feeds:2", sub.id, "pending"),
    ]
    assert [i.post_uid for i in await store.pending_outbox()] == ["feeds:1", "feeds:2"]


async def test_failed_first_subscription_does_not_break_the_channel(store: SqliteStore) -> None:
    def broken_backlog(sub: Subscription, channel_id: int) -> list[NewOutboxRow]:
        raise RuntimeError("render failed")

    with pytest.raises(RuntimeError):
        await store.create_subscription(
            GENERAL, FEED_A, Filters(), 300.0, "alice", [], broken_backlog, None
        )
    assert await store.find_resource(FEED_A) is None  # the transaction was rolled back

    sub, _ = await follow(store, GENERAL)  # trying again must work
    assert [s.id for s in await store.list_subscriptions(GENERAL)] == [sub.id]


# --- admit and the outbox ----------------------------------------------------------------


async def test_admit_dedupes_across_calls(store: SqliteStore) -> None:
    sub, cid = await follow(store)
    rid = await resource_id(store)
    build = rows_for([(sub, cid)])

    first = await store.admit(rid, ["k1", "k2", "k1"], build)
    assert [i.post_uid for i in first] == ["k1", "k2"]
    assert await store.admit(rid, ["k1", "k2"], build) == []
    assert [i.post_uid for i in await store.admit(rid, ["k2", "k3"], build)] == ["k3"]
    assert await store.admit(rid, [], build) == []
    assert await store.outbox_depth() == 3


async def test_seen_keys_are_per_resource(store: SqliteStore) -> None:
    a, cid = await follow(store, GENERAL, FEED_A)
    b, _ = await follow(store, GENERAL, FEED_B)
    build_a = rows_for([(a, cid)], lambda k: f"a:{k}")
    build_b = rows_for([(b, cid)], lambda k: f"b:{k}")
    assert [
        i.post_uid for i in await store.admit(await resource_id(store, FEED_A), ["k"], build_a)
    ] == ["a:k"]
    # Feed B keeps its own dedupe record: its key "k" is new to it.
    assert [
        i.post_uid for i in await store.admit(await resource_id(store, FEED_B), ["k"], build_b)
    ] == ["b:k"]


async def test_same_post_from_two_resources_is_queued_once_per_channel(
    store: SqliteStore,
) -> None:
    a, cid = await follow(store, GENERAL, FEED_A)
    b, _ = await follow(store, GENERAL, FEED_B)
    # Both resources carry the same post (say, a follow and a search): one uid.
    first = await store.admit(
        await resource_id(store, FEED_A), ["x"], rows_for([(a, cid)], lambda k: "net:1")
    )
    second = await store.admit(
        await resource_id(store, FEED_B), ["y"], rows_for([(b, cid)], lambda k: "net:1")
    )

    assert [i.post_uid for i in first] == ["net:1"]
    assert second == []
    assert [(i.channel_id, i.post_uid) for i in await store.pending_outbox()] == [(cid, "net:1")]


async def test_same_post_in_two_channels_is_queued_twice(store: SqliteStore) -> None:
    a, general_id = await follow(store, GENERAL)
    b, random_id = await follow(store, RANDOM)
    items = await store.admit(
        await resource_id(store), ["x"], rows_for([(a, general_id), (b, random_id)])
    )
    assert sorted(i.channel.native_id for i in items) == ["general", "random"]
    assert await store.outbox_depth() == 2


async def test_delivered_post_is_not_queued_again_in_that_channel(store: SqliteStore) -> None:
    a, cid = await follow(store, GENERAL, FEED_A)
    b, _ = await follow(store, GENERAL, FEED_B)
    items = await store.admit(
        await resource_id(store, FEED_A), ["x"], rows_for([(a, cid)], lambda k: "net:1")
    )
    await store.record_deliveries([(items[0], "msg-1")])

    again = await store.admit(
        await resource_id(store, FEED_B), ["y"], rows_for([(b, cid)], lambda k: "net:1")
    )

    assert again == []
    assert await store.pending_outbox() == []


async def test_record_deliveries_moves_rows_from_outbox(store: SqliteStore) -> None:
    sub, cid = await follow(store)
    items = await store.admit(await resource_id(store), ["p1", "p2"], rows_for([(sub, cid)]))
    assert len(await store.pending_outbox()) == 2

    await store.record_deliveries([(items[0], "general:42")])

    assert [i.post_uid for i in await store.pending_outbox()] == ["p2"]
    assert await store.delivery_for(GENERAL, "p1") == "general:42"
    assert await store.delivery_for(GENERAL, "p2") is None
    assert await store.delivery_for(RANDOM, "p1") is None


async def test_outbox_survives_restart_with_sending_state(db_path: Path) -> None:
    store = await open_at(db_path)
    sub, cid = await follow(store)
    items = await store.admit(await resource_id(store), ["p1", "p2"], rows_for([(sub, cid)]))
    await store.mark_sending([items[0].id])
    await store.close()

    store = await open_at(db_path)
    try:
        pending = await store.pending_outbox()
        assert [(i.post_uid, i.state, i.attempts) for i in pending] == [
            ("p1", "sending", 1),
            ("p2", "pending", 0),
        ]
        assert pending[0].channel == GENERAL
        assert pending[0].message == RichMessage(text="post p1")
        assert pending[0].key == f"starling:{cid}:p1"
    finally:
        await store.close()


async def test_defer_sets_not_before_and_returns_to_pending(store: SqliteStore) -> None:
    sub, cid = await follow(store)
    [item] = await store.admit(await resource_id(store), ["p1"], rows_for([(sub, cid)]))
    await store.mark_sending([item.id])

    await store.defer(item.id, 1234.5, "429 slow down")

    [after] = await store.pending_outbox()
    assert (after.state, after.not_before, after.attempts) == ("pending", 1234.5, 1)


# --- removal -----------------------------------------------------------------------------


async def test_remove_last_subscription_drops_resource_seen_and_outbox(
    store: SqliteStore,
) -> None:
    sub, cid = await follow(store, baseline=["old"])
    await store.admit(await resource_id(store), ["new"], rows_for([(sub, cid)]))

    removed = await store.remove_subscription(GENERAL, sub.id)

    assert removed == sub
    assert await store.list_subscriptions() == []
    assert await store.pending_outbox() == []
    assert await store.find_resource(FEED_A) is None

    # A re-follow starts fresh: the new baseline counts, the old seen keys are gone.
    again, again_cid = await follow(store, baseline=["newest"])
    rid = await resource_id(store)
    items = await store.admit(rid, ["old", "new", "newest"], rows_for([(again, again_cid)]))
    assert [i.post_uid for i in items] == ["new", "old"]


async def test_remove_one_of_two_subscriptions_keeps_the_resource(store: SqliteStore) -> None:
    a, general_id = await follow(store, GENERAL, baseline=["old"])
    b, random_id = await follow(store, RANDOM)
    rid = await resource_id(store)
    await store.admit(rid, ["p1"], rows_for([(a, general_id), (b, random_id)]))

    await store.remove_subscription(GENERAL, a.id)

    assert [i.channel for i in await store.pending_outbox()] == [RANDOM]
    assert await resource_id(store) == rid
    assert await store.admit(rid, ["old", "p1"], rows_for([(b, random_id)])) == []


async def test_remove_from_another_channel_changes_nothing(store: SqliteStore) -> None:
    sub, cid = await follow(store, GENERAL)
    await store.admit(await resource_id(store), ["p1"], rows_for([(sub, cid)]))
    before = (await store.list_subscriptions(), await store.pending_outbox())

    assert await store.remove_subscription(RANDOM, sub.id) is None
    assert await store.remove_subscription(GENERAL, sub.id + 100) is None

    assert (await store.list_subscriptions(), await store.pending_outbox()) == before


# --- health ------------------------------------------------------------------------------


async def test_health_round_trip(db_path: Path) -> None:
    hosts = [
        HealthHost("feeds", "a.example", "ok", 200, "", 1000.0, None, 0),
        HealthHost("feeds", "b.example", "http_5xx", 503, "Service Unavailable", 900.0, 990.0, 3),
    ]
    store = await open_at(db_path)
    await store.save_health([], hosts)
    # A later flush replaces a host's record instead of adding a second one.
    recovered = HealthHost("feeds", "b.example", "ok", 200, "", 1100.0, 990.0, 0)
    await store.save_health([], [recovered])
    await store.close()

    store = await open_at(db_path)
    try:
        loaded = sorted(await store.load_health_hosts(), key=lambda h: h.host)
        assert loaded == [hosts[0], recovered]
    finally:
        await store.close()


async def test_health_minutes_accumulate(store: SqliteStore) -> None:
    minute = int(time.time() // 60)
    await store.save_health([HealthMinute("feeds", "a.example", minute, "timeout", 2, 4.0)], [])
    await store.save_health([HealthMinute("feeds", "a.example", minute, "timeout", 1, 1.5)], [])
    assert await store.health_minutes(minute) == [
        HealthMinute("feeds", "a.example", minute, "timeout", 3, 5.5)
    ]


async def test_priority_lock_serves_delivery_first_and_survives_cancellation() -> None:
    import asyncio

    from bot.store.sqlite_core import PriorityLock

    lock = PriorityLock()
    order: list[str] = []

    async def hold(name: str, urgent: bool) -> None:
        async with lock.hold(urgent=urgent):
            order.append(name)
            await asyncio.sleep(0.01)

    async with lock.hold():
        tasks = [
            asyncio.create_task(hold("admit-1", False)),
            asyncio.create_task(hold("admit-2", False)),
            asyncio.create_task(hold("record", True)),
            asyncio.create_task(hold("cancelled", True)),
        ]
        await asyncio.sleep(0)
        tasks[3].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert order == ["record", "admit-1", "admit-2"]
    async with asyncio.timeout(1), lock.hold():
        pass  # nobody kept the lock


async def test_a_health_flush_prunes_old_tombstones_and_keeps_recent_ones(db_path: Path) -> None:
    store = await open_at(db_path)
    await store.retract(["feeds:old", "feeds:recent"])
    await store.close()
    with closing(sqlite3.connect(db_path)) as db, db:
        db.execute(
            "UPDATE tombstones SET at = ? WHERE post_uid = 'feeds:old'",
            (time.time() - TOMBSTONE_TTL_S - 60,),
        )
    store = await open_at(db_path)
    await store.save_health([], [])
    await store.close()
    with closing(sqlite3.connect(db_path)) as db:
        kept = db.execute("SELECT post_uid FROM tombstones").fetchall()
    assert kept == [("feeds:recent",)]
