"""SQLite rows of post-back: drafts, their per-network targets, approvals."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from bot.model import ChannelRef
from bot.protocols import Draft, DraftImage
from bot.store.base import (
    Postback,
    PostTarget,
)
from bot.store.sqlite_core import SqliteCore


class PostbackRows(SqliteCore):
    """Post-backs and their targets (`bot.postback`)."""

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


def _images_json(images: Sequence[DraftImage]) -> str:
    """A post-back's image links and alt texts; the bytes are downloaded again."""
    if not images:
        return ""
    return json.dumps([{"url": i.url, "alt": i.alt} for i in images], ensure_ascii=False)


def _images_from(value: str) -> tuple[DraftImage, ...]:
    if not value:
        return ()
    return tuple(DraftImage(str(i["url"]), str(i.get("alt", ""))) for i in json.loads(value))
