"""Upstream deletes mirrored in chat.

A source reports a deleted post as a `Tombstone`. `Store.retract` turns it, in one
transaction, into a durable row per chat message that carried the post, so a crash
before the chat answers only means the row is done after the restart. Each row is
then deleted on the chat (`on_upstream_delete = "delete"`, when the chat can), or
the message is edited into a short "deleted upstream" notice (`"mark"`, and the
fallback when deleting is refused), or left as it is (`"keep"`). A repeated delete
finds its rows already queued and does nothing; a delete of a post never relayed
finds no message and does nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence

from bot.clock import Clock
from bot.errors import ChatError
from bot.protocols import Chat, Deleter
from bot.render import render_deleted
from bot.store.base import Retraction, Store
from bot.supervise import Supervisor

log = logging.getLogger(__name__)

MODES = ("delete", "mark", "keep")
RETRY_BASE_S = 5.0
RETRY_MAX_S = 600.0
MAX_ATTEMPTS = 12  # then the row stays pending for the next start, instead of spinning
RECENT_DELETES = 10_000  # uids remembered in memory for sends racing their delete


class Retractor:
    """Applies retractions, one paced queue per channel (deletes count against the
    same platform limits as sends)."""

    def __init__(
        self,
        store: Store,
        chats: Mapping[str, Chat],
        clock: Clock,
        supervisor: Supervisor,
        *,
        mode: str = "delete",
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"on_upstream_delete must be one of {', '.join(MODES)}")
        self._store = store
        self._chats = chats
        self._clock = clock
        self._supervisor = supervisor
        self.mode = mode
        self.deleted: set[str] = set()  # uids deleted upstream during this run
        self._queues: dict[int, deque[Retraction]] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.done = 0

    def remember(self, uids: Iterable[str]) -> None:
        """Posts deleted upstream during this run, for sends racing their delete."""
        if len(self.deleted) > RECENT_DELETES:
            self.deleted.clear()  # only sends in flight right now need the check
        self.deleted.update(uids)

    async def retract(self, uids: Sequence[str], held: Collection[int] = ()) -> None:
        """Posts deleted upstream: queue (durably) and apply what carried them; their
        outbox rows go too, except the `held` ones a sender still has in hand."""
        self.remember(uids)
        self._queue(await self._store.retract(uids, held=held))

    async def delivered_late(self, uids: Sequence[str]) -> None:
        """Deliveries just recorded for posts whose delete arrived while they were sent."""
        self._queue(await self._store.retract(uids, known_only=True))

    async def recover(self) -> int:
        """Resume the retractions a previous run left pending."""
        rows = await self._store.pending_retractions()
        self._queue(rows)
        return len(rows)

    async def drain(self) -> None:
        while tasks := [t for t in self._tasks.values() if not t.done()]:
            await asyncio.wait(tasks)

    def _queue(self, rows: Sequence[Retraction]) -> None:
        for row in rows:
            queue = self._queues.setdefault(row.channel_id, deque())
            queue.append(row)
            task = self._tasks.get(row.channel_id)
            if task is None or task.done():
                self._tasks[row.channel_id] = self._supervisor.spawn(
                    self._run(row.channel_id, queue), name=f"retract-{row.channel_id}"
                )

    async def _run(self, channel_id: int, queue: deque[Retraction]) -> None:
        while queue:
            row = queue.popleft()
            chat = self._chats.get(row.channel.platform)
            if chat is None:
                continue  # platform not configured in this run; the row waits for one
            try:
                await self._apply(chat, row)
            except ChatError as err:
                if err.permanent:  # the message or channel is gone: nothing left to hide
                    log.info("retraction in %s ends: %s", row.channel.native_id, err)
                    await self._store.settle_retraction(
                        channel_id, row.post_uid, done=True, error=str(err)
                    )
                    continue
                await self._retry(row, queue, err)
                continue
            except Exception as err:  # a plugin bug must not end the queue
                log.exception("chat %s failed to retract a message", chat.name)
                await self._retry(row, queue, ChatError(str(err)))
                continue
            await self._store.settle_retraction(channel_id, row.post_uid, done=True)
            self.done += 1
            if chat.min_interval_s > 0:
                await self._clock.sleep(chat.min_interval_s)
        self._queues.pop(channel_id, None)

    async def _apply(self, chat: Chat, row: Retraction) -> None:
        if self.mode == "keep":
            return
        if self.mode == "delete" and isinstance(chat, Deleter):
            try:
                await chat.delete(row.channel, row.message_ref)
                return
            except ChatError as err:
                if not err.permanent:
                    raise
                # Not allowed to delete here (permissions, a message too old): mark it.
                log.info("could not delete in %s (%s); marking instead", row.channel, err)
        network = row.post_uid.partition(":")[0]
        await chat.edit(row.channel, row.message_ref, render_deleted(network))

    async def _retry(self, row: Retraction, queue: deque[Retraction], err: ChatError) -> None:
        attempts = row.attempts + 1
        await self._store.settle_retraction(
            row.channel_id, row.post_uid, done=False, error=str(err)
        )
        if attempts >= MAX_ATTEMPTS:
            log.warning("giving up retracting in %s for now: %s", row.channel.native_id, err)
            return
        delay = err.retry_after_s or min(RETRY_BASE_S * 2 ** (attempts - 1), RETRY_MAX_S)
        log.info("retraction in %s deferred %.0f s: %s", row.channel.native_id, delay, err)
        await self._clock.sleep(delay)
        queue.appendleft(dataclasses.replace(row, attempts=attempts))
