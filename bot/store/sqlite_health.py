"""SQLite rows of upstream health: per-minute and per-day counts, hosts, outages."""

from __future__ import annotations

import time
from collections.abc import Sequence

from bot.store.base import (
    HealthDay,
    HealthHost,
    HealthMinute,
    StoredNotice,
    StoredOutage,
)
from bot.store.sqlite_core import (
    HEALTH_DAYS_KEPT,
    MIRROR_PRINT_TTL_S,
    TOMBSTONE_TTL_S,
    SqliteCore,
)


class HealthRows(SqliteCore):
    """Health records and outages, as `bot.health` and `bot.outage` keep them."""

    # --- health ---------------------------------------------------------------------

    async def save_health(
        self,
        minutes: Sequence[HealthMinute],
        hosts: Sequence[HealthHost],
        days: Sequence[HealthDay] = (),
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
            if days:
                await db.executemany(
                    "INSERT INTO health_days (network, day, outcome, count, latency_sum) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (network, day, outcome) DO UPDATE "
                    "SET count = count + excluded.count, "
                    "latency_sum = latency_sum + excluded.latency_sum",
                    [(d.network, d.day, d.outcome, d.count, d.latency_sum) for d in days],
                )
            now = time.time()
            cutoff = int(now // 60) - 31 * 24 * 60
            await db.execute("DELETE FROM health_minutes WHERE minute < ?", (cutoff,))
            await db.execute("DELETE FROM mirror_prints WHERE at < ?", (now - MIRROR_PRINT_TTL_S,))
            await db.execute("DELETE FROM tombstones WHERE at < ?", (now - TOMBSTONE_TTL_S,))
            day_cutoff = int(now // 86400) - HEALTH_DAYS_KEPT
            await db.execute("DELETE FROM health_days WHERE day < ?", (day_cutoff,))

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

    # --- health per day (the status page's 30 days; written by `save_health`) -------

    async def health_days(self, since_day: int) -> list[HealthDay]:
        async with self.db.execute(
            "SELECT network, day, outcome, count, latency_sum FROM health_days "
            "WHERE day >= ? ORDER BY day",
            (since_day,),
        ) as cur:
            return [HealthDay(*row) for row in await cur.fetchall()]
