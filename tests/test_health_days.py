"""The per-day health rollup behind the status page's 30 days (migration 0010)."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

from bot.clock import SystemClock
from bot.errors import Outcome
from bot.health import HealthBook
from bot.store.base import HealthDay, HealthMinute
from bot.store.sqlite import SqliteStore

MIGRATIONS = Path(__file__).resolve().parents[1] / "bot" / "store" / "migrations"


async def test_flushes_add_up_per_network_day_and_outcome(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    await store.open()
    try:
        health = HealthBook(SystemClock())
        for host in ("a.example", "b.example", "c.example"):  # many hosts, one row per day
            health.record("feeds", host, Outcome.OK, latency_s=0.25)
            health.record("feeds", host, Outcome.TIMEOUT, latency_s=1.0)
        await health.flush(store)
        health.record("feeds", "a.example", Outcome.OK, latency_s=0.25)
        health.record("x", "api.x.com", Outcome.RATE_LIMITED)
        await health.flush(store)
        today = int(time.time() // 86400)
        rows = sorted(await store.health_days(today - 29), key=lambda d: (d.network, d.outcome))
        assert rows == [
            HealthDay("feeds", today, "ok", 4, 1.0),
            HealthDay("feeds", today, "timeout", 3, 3.0),
            HealthDay("x", today, "rate_limited", 1, 0.0),
        ]
        assert await store.health_days(today + 1) == []
    finally:
        await store.close()


async def test_the_migration_rolls_up_the_minutes_recorded_before_it(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = SqliteStore(str(path))
    await store.open()
    day = int(time.time() // 86400) - 2
    minutes = [
        HealthMinute("mastodon", "one.example", day * 1440 + 5, "ok", 10, 2.0),
        HealthMinute("mastodon", "two.example", day * 1440 + 900, "ok", 5, 1.0),
        HealthMinute("mastodon", "two.example", (day + 1) * 1440, "http_5xx", 2, 0.5),
    ]
    await store.save_health(minutes, [])
    await store.close()
    # A database from before 0010: no rollup yet. The migration's script builds it.
    script = (MIGRATIONS / "0010_health_days.sql").read_text(encoding="utf-8")
    with closing(sqlite3.connect(path)) as db:
        db.executescript(f"DROP TABLE health_days; BEGIN; {script} COMMIT;")

    store = SqliteStore(str(path))
    await store.open()
    try:
        assert sorted(await store.health_days(day), key=lambda d: d.day) == [
            HealthDay("mastodon", day, "ok", 15, 3.0),
            HealthDay("mastodon", day + 1, "http_5xx", 2, 0.5),
        ]
    finally:
        await store.close()
