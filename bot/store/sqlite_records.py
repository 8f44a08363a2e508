"""SQLite rows beside the pipeline: upstream deletes, threads, installations, plugin state."""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence

import msgspec

from bot.store.base import (
    Retraction,
)
from bot.store.sqlite_core import SqliteCore, chunks, json_encoder


class RecordRows(SqliteCore):
    """Retractions, thread lookups, installations (Slack OAuth) and `PluginContext.state`."""

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
            for chunk in chunks(unique):
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
                (platform, enterprise_id, team_id, json_encoder.encode(dict(data)), time.time()),
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
